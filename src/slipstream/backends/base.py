"""The interface between the loop core and the operating system's readiness API.

A backend knows nothing about callbacks, handles or transports.  It keeps one
interest mask per file descriptor and answers one question: which descriptors
became ready, waiting at most ``timeout`` seconds.  The loop core owns the
fd -> callback maps.  It asks the question as ``poll_ready``, handing the
backend those maps (opaque values to it) and the list to append the ready ones
to: a compiled backend then never builds the ``(fd, events)`` pairs of
``poll`` only to have them taken apart (see ``epoll_wait_ready`` in
``syscalls``); a backend that has only ``poll`` gets the same from
:func:`collect_ready`.  A new mechanism (io_uring, say) is a new module
implementing :class:`IOBackend`, not an edit of the loop; deriving from
:class:`~.ready.ReadyBackend` lets the compiled core call its ``poll_ready``
without a method lookup (``ready.py``).

The event bits are the ones ``poll(2)`` and ``epoll(7)`` share (``POLLIN`` = 1,
``POLLOUT`` = 4, ``POLLERR`` = 8, ``POLLHUP`` = 16), so the epoll and poll
backends hand the kernel's masks through untouched; other backends translate.
"""

from __future__ import annotations

from typing import Protocol, TypeVar, runtime_checkable

from .ready import ReadyBackend

T = TypeVar("T")

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


class PollingBackend(Protocol):
    """The least a readiness mechanism must offer the loop: :class:`IOBackend` but ``poll_ready``.

    (The loop adds ``poll_ready`` to such a backend: :func:`complete_backend`.)
    """

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


@runtime_checkable
class IOBackend(PollingBackend, Protocol):
    """What the loop core needs from a readiness mechanism."""

    def poll_ready(
        self,
        timeout: float | None,
        readers: dict[int, T],
        writers: dict[int, T],
        ready: list[T],
    ) -> int:
        """Wait as :meth:`poll` does, and dispatch at once; return the number of events.

        For each ``(fd, events)`` that :meth:`poll` would have returned, in
        order: if ``events`` has a bit of ``READ_EVENTS``, ``readers[fd]`` is
        appended to ``ready`` (when ``fd`` is in ``readers``), then likewise
        ``writers[fd]`` for ``WRITE_EVENTS``.  :func:`collect_ready` is this
        in terms of :meth:`poll`.
        """
        ...


class CoreBackend(IOBackend, Protocol):
    """What :func:`complete_backend` gives the loop: an :class:`IOBackend` with ``watch_edges``.

    ``watch_edges`` is :class:`~.ready.ReadyBackend`'s (``set_interest`` unless
    the backend has registrations that need less, as compiled epoll does), so a
    backend that derives from neither gets it from the wrapper.
    """

    def watch_edges(self, fd: int, events: int, owner: object) -> None:
        """``set_interest``, for watchers that retry until EAGAIN (see ``ReadyBackend``)."""


def collect_ready(
    events: list[tuple[int, int]],
    readers: dict[int, T],
    writers: dict[int, T],
    ready: list[T],
) -> int:
    """Dispatch :meth:`IOBackend.poll`'s ``events`` as :meth:`IOBackend.poll_ready` does."""
    for fd, mask in events:
        if mask & READ_EVENTS:
            handle = readers.get(fd)
            if handle is not None:
                ready.append(handle)
        if mask & WRITE_EVENTS:
            handle = writers.get(fd)
            if handle is not None:
                ready.append(handle)
    return len(events)


def complete_backend(backend: PollingBackend) -> CoreBackend:
    """``backend`` itself if it is a :class:`ReadyBackend`; else ``backend`` wrapped in one.

    The loop core holds its backend as a :class:`ReadyBackend` (compiled, it
    calls ``poll_ready`` as C through that type; see ``ready.py``), so what
    this returns always is one.  The wrapper calls the backend's own
    ``poll_ready`` if it has one, else its ``poll`` then :func:`collect_ready`
    (a backend written before ``poll_ready`` joined the interface still works).
    """
    if isinstance(backend, ReadyBackend):
        return backend
    return _CompletedBackend(backend)


class _CompletedBackend(ReadyBackend):
    """A backend that is not a :class:`ReadyBackend`, as one."""

    def __init__(self, backend: PollingBackend) -> None:
        self.backend = backend
        self.name = backend.name
        self.poll = backend.poll
        self.fileno = backend.fileno
        self.close = backend.close
        self._own_poll_ready = backend.poll_ready if isinstance(backend, IOBackend) else None

    def set_interest(self, fd: int, events: int) -> None:
        self.backend.set_interest(fd, events)

    def poll_ready(
        self,
        timeout: float | None,
        readers: dict[int, T],
        writers: dict[int, T],
        ready: list[T],
    ) -> int:
        if self._own_poll_ready is not None:
            return self._own_poll_ready(timeout, readers, writers, ready)
        return collect_ready(self.poll(timeout), readers, writers, ready)
