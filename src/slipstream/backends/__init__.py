"""I/O readiness backends: one module per mechanism, chosen once per loop.

``SLIPSTREAM_BACKEND=epoll|selector`` forces a choice (the test suite runs the
loop on both); otherwise epoll where the platform has it, else selectors.
"""

from __future__ import annotations

import os
import select

from .base import ERROR, HANGUP, READ_EVENTS, READABLE, WRITABLE, WRITE_EVENTS, IOBackend

__all__ = [
    "ERROR",
    "HANGUP",
    "READABLE",
    "READ_EVENTS",
    "WRITABLE",
    "WRITE_EVENTS",
    "IOBackend",
    "available_backends",
    "create_backend",
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
