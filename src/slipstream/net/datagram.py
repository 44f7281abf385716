"""UDP and Unix datagram endpoints: ``create_datagram_endpoint``."""

from __future__ import annotations

from ..core import CoreLoop


class DatagramEndpoints(CoreLoop):
    """``create_datagram_endpoint``."""
