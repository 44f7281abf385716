"""I/O readiness backends: one module per mechanism, chosen once per loop.

``SLIPSTREAM_BACKEND=epoll|selector`` forces a choice (the test suite runs the
loop on both); otherwise epoll where the platform has it, else selectors.

The epoll backend and :mod:`.socket_calls` (the socket system calls of the
transports and ``sock_*``) are compiled where ``pip install`` had a C compiler;
:data:`COMPILED` says whether they are in use (``SLIPSTREAM_PURE=1`` loads their
sources, as for the core).
"""

from __future__ import annotations

import os
import select

from ..accelerate import load_modules

# Before anything imports them (base.py imports ready): compiled or sources,
# one choice for the group.  ready comes first, as the compiled epoll backend
# derives from its C type.
COMPILED: bool = load_modules(
    __name__,
    ("ready", "socket_calls", "epoll") if hasattr(select, "epoll") else ("ready", "socket_calls"),
)
"""Whether the compiled I/O path (epoll backend, socket calls) is in use."""

from .base import (  # noqa: E402  (after the selection above)
    ERROR,
    HANGUP,
    READ_EVENTS,
    READABLE,
    WRITABLE,
    WRITE_EVENTS,
    CoreBackend,
    IOBackend,
    PollingBackend,
    collect_ready,
    complete_backend,
)
from .ready import ReadyBackend  # noqa: E402

# The socket calls the transports and sock_* make: compiled, socket_calls' C
# functions; interpreted, syscalls' one-line wrappers of the socket methods,
# which socket_calls would only wrap once more (a Python frame per call).
if COMPILED:
    from .socket_calls import (
        recv,
        recv_into,
        recv_or_none,
        recv_sized,
        recvfrom,
        send,
        send_count,
        sendmsg_count,
        sendto,
        wait_after_short_read,
    )
else:
    from .syscalls import (
        recv,
        recv_into,
        recv_or_none,
        recv_sized,
        recvfrom,
        send,
        send_count,
        sendmsg_count,
        sendto,
        wait_after_short_read,
    )

__all__ = [
    "COMPILED",
    "ERROR",
    "HANGUP",
    "READABLE",
    "READ_EVENTS",
    "WRITABLE",
    "WRITE_EVENTS",
    "CoreBackend",
    "IOBackend",
    "PollingBackend",
    "ReadyBackend",
    "available_backends",
    "collect_ready",
    "complete_backend",
    "create_backend",
    "recv",
    "recv_into",
    "recv_or_none",
    "recv_sized",
    "recvfrom",
    "send",
    "send_count",
    "sendmsg_count",
    "sendto",
    "wait_after_short_read",
]


def available_backends() -> list[str]:
    """Names of the backends this platform supports, best first."""
    names = []
    if hasattr(select, "epoll"):
        names.append("epoll")
    names.append("selector")
    return names


def create_backend(name: str | None = None) -> IOBackend:
    """A new backend by name, or the best one for this platform."""
    if name is None:
        name = os.environ.get("SLIPSTREAM_BACKEND") or available_backends()[0]
    if name == "epoll":
        from .epoll import EpollBackend

        return EpollBackend()
    if name == "selector":
        from .selector import SelectorBackend

        return SelectorBackend()
    raise ValueError(f"unknown I/O backend {name!r}; available: {available_backends()}")
