"""Linux epoll backend: ``select.epoll`` called directly, no selector key objects.

Compiled (``epoll.pxd`` beside this file), the backend is a C type and its
``epoll_wait`` is the kernel's own, made by :mod:`.syscalls` without
argument parsing or a GIL release when events are already there.

One-shot registrations for watches that come and go
===================================================

Interest in a descriptor is mostly of two kinds.  A transport watches its
socket for as long as the connection lives and is woken again and again.  A
``sock_recv`` (or ``sock_sendall``, ``sock_accept``...) that would block
watches the socket until the *first* readiness and then stops: in a
request/response loop that is one registration and one removal per message,
``EPOLL_CTL_ADD`` then ``EPOLL_CTL_DEL``, about 1.7 µs of system calls.

So a descriptor watched again within a poll or two of its watch going away is
registered with ``EPOLLONESHOT``.  When the kernel reports a one-shot
registration it *disarms* it: the registration stays in the epoll set but
reports nothing more until re-armed with ``EPOLL_CTL_MOD``.  Then:

* if the interest is removed after that event (the ``sock_*`` case), the
  kernel needs no call: the disarmed registration is *parked*, and the next
  wait on that number re-arms it, one-shot again, with one ``EPOLL_CTL_MOD``
  (about 0.4 µs) instead of an ADD and a DEL;
* if the interest is still there at the next poll (a lasting watcher on a
  number that was used briefly before), it is re-armed level-triggered, once,
  and stays so;
* if the interest is removed *before* the kernel reported it (a cancelled
  wait), the registration is still armed and is deleted at once, as always.

Everything else (a transport's watch, ``add_reader``) is level-triggered from
the start, as before: one ``EPOLL_CTL_ADD``, one ``EPOLL_CTL_DEL``.

Which registrations the kernel reported is known exactly: each poll looks at
its events for the armed one-shot descriptors (a set lookup per event, and
only while one-shot registrations are armed).

Why parking is safe where "delete later" would not be
-----------------------------------------------------

Deferring the ``EPOLL_CTL_DEL`` of an *armed* registration would be a trap:
user code may close the descriptor first.  epoll keys a registration on the
open file *and* the descriptor number, and drops it when the file's last
descriptor closes; if the file lives on elsewhere (``dup()``, a forked child,
a descriptor passed to another process), the registration survives, can no
longer be removed (the number no longer names that file), and, being
level-triggered and armed, makes every poll return at once: the loop spins.
A parked registration is *disarmed*: whatever happens to its file, it never
reports anything again, so a stale one is harmless.

The other trap is the number being reused.  A parked descriptor may be closed
and its number given to a new socket: the kernel dropped (or kept, disarmed
and stale) the old registration, and the new file has none.  So re-arming a
parked number never trusts our records: ``EPOLL_CTL_MOD`` acts on the file
the number names *now* and fails with ``ENOENT`` if that file is not
registered, and then it is registered afresh.  Nothing is assumed to be in
the kernel without the kernel having said so in that very call.
"""

from __future__ import annotations

import errno
import select
from typing import TypeVar

from . import syscalls
from .base import READ_EVENTS, READABLE, WRITABLE, WRITE_EVENTS
from .ready import ReadyBackend

T = TypeVar("T")

# The largest timeout epoll_wait accepts is INT_MAX milliseconds; asyncio caps
# its own at a day, and so do we, which keeps the conversion from overflowing.
_MAX_TIMEOUT = 24 * 3600.0

_ONESHOT = select.EPOLLONESHOT
_READ_EVENTS = READ_EVENTS
_WRITE_EVENTS = WRITE_EVENTS

# A watch removed and added again within this many polls is a short-lived one.
_TRANSIENT_POLLS = 2


class EpollBackend(ReadyBackend):
    """Level-triggered epoll, with one-shot registrations for short-lived watches."""

    name = "epoll"

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._epfd = self._epoll.fileno()
        self._maxevents = 1024
        # Where the compiled build's epoll_wait() has the kernel write its events.
        self._buffer = syscalls.epoll_buffer(self._maxevents)
        # What the loop wants per descriptor: READABLE | WRITABLE, never 0.
        self._interest: dict[int, int] = {}
        # One-shot registrations: armed (waiting), and fired (reported in the
        # last poll, so disarmed by the kernel) while still wanted.
        self._armed: set[int] = set()
        self._fired: set[int] = set()
        # Disarmed registrations nobody wants any more: left in the kernel,
        # re-armed (or replaced, if the number now names another file) by the
        # next set_interest for that number.
        self._parked: set[int] = set()
        # Numbers whose level-triggered watch was removed, with the poll count
        # then: watched again within _TRANSIENT_POLLS, they are registered
        # one-shot.  (A transport's number freed by a close and reused much
        # later by another connection stays level-triggered.)
        self._transient: dict[int, int] = {}
        self._polls = 0

    def fileno(self) -> int:
        return self._epoll.fileno()

    def set_interest(self, fd: int, events: int) -> None:
        events &= READABLE | WRITABLE
        old = self._interest.get(fd, 0)
        if events == old:
            return
        if events == 0:
            del self._interest[fd]
            if fd in self._fired:
                # Reported, hence disarmed: nothing to undo in the kernel.
                self._fired.discard(fd)
                self._parked.add(fd)
                return
            # Armed (a wait cancelled before its event) or level-triggered:
            # the registration must go now.
            self._armed.discard(fd)
            self._transient[fd] = self._polls
            try:
                self._epoll.unregister(fd)
            except OSError:
                # The descriptor was closed while registered: the kernel
                # dropped it from the epoll set already.
                pass
            return
        if old:
            # A live registration waits for something else now.  A one-shot
            # one (armed, or fired and so disarmed) is re-armed one-shot.
            if fd in self._armed or fd in self._fired:
                self._fired.discard(fd)
                self._rearm(fd, events | _ONESHOT)
                self._armed.add(fd)
            else:
                self._rearm(fd, events)
        elif fd in self._parked:
            self._parked.discard(fd)
            self._rearm(fd, events | _ONESHOT)
            self._armed.add(fd)
        else:
            removed = self._transient.pop(fd, None)
            if removed is not None and self._polls - removed <= _TRANSIENT_POLLS:
                self._register(fd, events | _ONESHOT)
                self._armed.add(fd)
            else:
                self._register(fd, events)
        self._interest[fd] = events

    def _register(self, fd: int, mask: int) -> None:
        try:
            self._epoll.register(fd, mask)
        except FileExistsError:
            # A number we had forgotten is still in the set: it was closed
            # and reused without being unregistered.
            self._epoll.modify(fd, mask)

    def _rearm(self, fd: int, mask: int) -> None:
        try:
            self._epoll.modify(fd, mask)
        except FileNotFoundError:
            # The number names a file that is not in the set (the one that
            # was registered has been closed): register this one.
            self._epoll.register(fd, mask)
        except OSError as exc:
            if exc.errno == errno.EBADF:
                self._forget(fd)  # closed: the kernel has no registration left
            raise

    def _forget(self, fd: int) -> None:
        self._interest.pop(fd, None)
        self._armed.discard(fd)
        self._fired.discard(fd)
        self._parked.discard(fd)

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        if self._fired:
            self._rearm_lasting()
        if timeout is None:
            timeout = -1.0
        elif timeout > _MAX_TIMEOUT:
            timeout = _MAX_TIMEOUT
        # The timeout is rounded up to whole milliseconds, so a timer is never
        # woken for early.  EINTR runs the signal handlers (PEP 475).
        events = syscalls.epoll_wait(
            self._epoll, self._epfd, self._buffer, timeout, self._maxevents
        )
        self._polls += 1
        if self._armed:
            armed = self._armed
            fired = self._fired
            for fd, _ in events:
                if fd in armed:
                    armed.discard(fd)
                    fired.add(fd)
        if len(events) == self._maxevents:
            self._grow()
        return events

    def poll_ready(
        self,
        timeout: float | None,
        readers: dict[int, T],
        writers: dict[int, T],
        ready: list[T],
    ) -> int:
        # poll() and collect_ready() in one, keeping the armed -> fired records
        # on the way; compiled, straight from the kernel's event array.  (The
        # preparation is poll()'s, written out again: interpreted, a helper
        # method for it cost ~1,000 instructions a turn, measured.)
        if self._fired:
            self._rearm_lasting()
        # Into a C double, compiled (epoll.pxd), before the comparison: a
        # Python float compared with _MAX_TIMEOUT boxed the bound anew on
        # every poll.
        if timeout is None:
            seconds = -1.0
        else:
            seconds = timeout
            if seconds > _MAX_TIMEOUT:
                seconds = _MAX_TIMEOUT
        count = syscalls.epoll_wait_ready(
            self._epoll,
            self._epfd,
            self._buffer,
            seconds,
            self._maxevents,
            _READ_EVENTS,
            _WRITE_EVENTS,
            readers,
            writers,
            ready,
            self._armed,
            self._fired,
        )
        self._polls += 1
        if count == self._maxevents:
            self._grow()
        return count

    def _grow(self) -> None:
        # A full event array: more may be waiting, so wait for twice as many.
        self._maxevents *= 2
        self._buffer = syscalls.epoll_buffer(self._maxevents)

    def _rearm_lasting(self) -> None:
        # Reported last time and still wanted: a lasting watcher after all.
        # Re-arm it level-triggered, for good.
        fired = self._fired
        while fired:
            fd = fired.pop()
            try:
                self._rearm(fd, self._interest[fd])
            except OSError:
                # Closed while watched (the caller's bug, as with any loop):
                # the kernel has forgotten the registration, and so do we.
                self._forget(fd)

    def close(self) -> None:
        for records in (self._armed, self._fired, self._parked):
            records.clear()
        self._transient.clear()
        self._interest.clear()
        self._epfd = -1
        self._epoll.close()
