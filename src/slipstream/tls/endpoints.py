"""``start_tls`` and the ``ssl=`` plumbing shared by the stream endpoints."""

from __future__ import annotations

from ..core import CoreLoop


class TLSSupport(CoreLoop):
    """``start_tls``."""
