"""The interface between the loop core and the operating system's readiness API.

A backend knows nothing about callbacks, handles or transports.  It keeps one
interest mask per file descriptor and answers one question: which descriptors
became ready, waiting at most ``timeout`` seconds.  The loop core owns the
fd -> callback maps and does the dispatching.  A new mechanism (io_uring, a
compiled epoll) is a new module implementing :class:`IOBackend`, not an edit of
the loop.

The event bits are the ones ``poll(2)`` and ``epoll(7)`` share (``POLLIN`` = 1,
``POLLOUT`` = 4, ``POLLERR`` = 8, ``POLLHUP`` = 16), so the epoll and poll
backends hand the kernel's masks through untouched; other backends translate.
"""

from __future__ import annotations

from typing import Protocol

READABLE = 0x001
"""Interest in, or readiness for, reading."""
WRITABLE = 0x004
"""Interest in, or readiness for, writing."""
ERROR = 0x008
HANGUP = 0x010
INVALID = 0x020

# An error or hang-up wakes both directions: the reader sees EOF or the error
# from recv(), the writer sees the error from send().  That is also how
# selectors and asyncio report them, and it is what keeps a half-dead socket
# from being polled forever without anyone noticing.
READ_EVENTS = READABLE | ERROR | HANGUP | INVALID
WRITE_EVENTS = WRITABLE | ERROR | HANGUP | INVALID


class IOBackend(Protocol):
    """What the loop core needs from a readiness mechanism."""

    name: str

    def set_interest(self, fd: int, events: int) -> None:
        """Make ``events`` (READABLE | WRITABLE, or 0 to forget ``fd``) the interest for ``fd``.

        Raises the OS error if the descriptor cannot be watched (for
        example a regular file on epoll, or a closed descriptor).
        """

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        """Wait up to ``timeout`` seconds (``None``: forever) and return ``(fd, events)`` pairs."""
        ...

    def fileno(self) -> int:
        """The backend's own descriptor, or -1 if it has none."""
        ...

    def close(self) -> None:
        """Release the backend's kernel resources."""
