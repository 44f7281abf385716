"""Name resolution: ``getaddrinfo`` and ``getnameinfo`` off the loop's thread."""

from __future__ import annotations

from ..core import CoreLoop


class NameResolution(CoreLoop):
    """``getaddrinfo`` / ``getnameinfo``."""
