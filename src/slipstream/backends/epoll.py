"""Linux epoll backend: ``select.epoll`` called directly, no selector key objects."""

from __future__ import annotations

import select

from .base import READABLE, WRITABLE

# The largest timeout epoll_wait accepts is INT_MAX milliseconds; asyncio caps
# its own at a day, and so do we, which keeps the conversion from overflowing.
_MAX_TIMEOUT = 24 * 3600.0


class EpollBackend:
    """Level-triggered epoll, one registration per descriptor."""

    name = "epoll"

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._interest: dict[int, int] = {}
        self._maxevents = 1024

    def fileno(self) -> int:
        return self._epoll.fileno()

    def set_interest(self, fd: int, events: int) -> None:
        events &= READABLE | WRITABLE
        old = self._interest.get(fd, 0)
        if events == old:
            return
        if events == 0:
            del self._interest[fd]
            try:
                self._epoll.unregister(fd)
            except OSError:
                # The descriptor was closed while registered: the kernel
                # dropped it from the epoll set already.
                pass
            return
        if old == 0:
            try:
                self._epoll.register(fd, events)
            except FileExistsError:
                # A descriptor number we believed forgotten is still in the
                # set: it was closed and reused without an unregister.
                self._epoll.modify(fd, events)
        else:
            try:
                self._epoll.modify(fd, events)
            except FileNotFoundError:
                # Closed and reused: the kernel forgot the old registration.
                self._epoll.register(fd, events)
        self._interest[fd] = events

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        if timeout is None:
            timeout = -1.0
        elif timeout > _MAX_TIMEOUT:
            timeout = _MAX_TIMEOUT
        # select.epoll.poll rounds the timeout up to whole milliseconds, so a
        # timer is never woken for early.  EINTR is retried by Python (PEP 475).
        events = self._epoll.poll(timeout, self._maxevents)
        if len(events) == self._maxevents:
            self._maxevents *= 2
        return events

    def close(self) -> None:
        self._interest.clear()
        self._epoll.close()
