"""The ``sock_*`` coroutines: non-blocking socket operations awaited on the loop."""

from __future__ import annotations

from ..core import CoreLoop


class SocketOperations(CoreLoop):
    """``sock_recv``, ``sock_sendall``, ``sock_connect``, ``sock_accept`` and friends."""
