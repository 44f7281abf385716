"""Zero-copy file transmission: ``sock_sendfile`` and ``sendfile``."""

from __future__ import annotations

from ..core import CoreLoop


class SendfileSupport(CoreLoop):
    """``sock_sendfile`` / ``sendfile``."""
