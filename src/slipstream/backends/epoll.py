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

Edge-triggered registrations for the ``sock_*`` waits (compiled)
===============================================================

A parked one-shot registration still costs its ``EPOLL_CTL_MOD`` at the next
wait: in a ``sock_recv`` loop, one system call per message, ~0.4 µs of the
~8 µs a 1 KiB round trip costs the server.  The ``sock_*`` waits can do
without it, because they promise more than a watch in general
(:meth:`watch_edges`, the loop's ``watch_readable_edge``): a wait starts only
once the operation found nothing to do, and its callback retries until the
kernel says EAGAIN.  For such a watcher readiness reported once per change
(``EPOLLET``) is enough: after an EAGAIN, the next data, connection or room
to write is reported.  So the registration is made edge-triggered, stays in
the kernel when the wait ends, and the next wait on the same socket makes no
system call at all.  (rloop registers every socket this way.)

Four things keep that exact:

* *What was reported while nobody waited.*  A registration that stays armed
  reports data that arrives between two waits, to no one; the kernel will not
  report it again.  Such a descriptor is remembered (``_missed``, filled by the
  dispatch), and its next read wait re-arms it with ``EPOLL_CTL_MOD``, which
  makes the kernel look at the socket afresh and report what is there.  (The
  ``sock_recv`` that waits without trying first, after a short read of a
  stream, relies on this.)
* *A state, not news.*  The end of the stream (``EPOLLRDHUP``, registered for
  that) or an error that came with the data is reported once, with it; the
  read that takes the data returns short and says nothing of the end, which
  the next read would.  An event that carries one marks the descriptor
  missed too, so the next wait has the kernel look again.
* *A number that names another file now.*  The registration is reused only for
  the same socket object, still open on the same number (a weak reference to
  it is kept): a socket closed and its number given to a new one gets a new
  registration.
* *A file that outlives its number.*  If a socket is closed while its file
  lives on (``dup()``, a forked child), the kernel keeps its registration,
  armed, and nobody can remove it any more.  Being edge-triggered it reports
  only new readiness, never in a loop, and each registration's events carry a
  tag (the high half of the event's data: one number per registration) that
  the dispatch checks, so a stale registration's events are dropped instead of
  being taken for the descriptor's new owner's.  ``select.epoll`` keeps only
  the descriptor in the event's data, so only the compiled build, which makes
  the ``epoll_ctl`` calls itself, has tags, and the interpreted build keeps
  the one-shot registrations above for these waits too.

A watch that does not make the promise (``add_reader``, a transport) on a
descriptor with an edge-triggered registration makes it level-triggered, for
good, with one ``EPOLL_CTL_MOD``.

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
import weakref
from typing import Any, TypeVar

from . import syscalls
from .base import READ_EVENTS, READABLE, WRITABLE, WRITE_EVENTS
from .ready import ReadyBackend

T = TypeVar("T")

# The largest timeout epoll_wait accepts is INT_MAX milliseconds; asyncio caps
# its own at a day, and so do we, which keeps the conversion from overflowing.
_MAX_TIMEOUT = 24 * 3600.0

_ONESHOT = select.EPOLLONESHOT
# Edge-triggered, and told of the peer's end of the stream: see watch_edges.
_EDGE = select.EPOLLET | select.EPOLLRDHUP
_ADD = syscalls.EPOLL_CTL_ADD
_MOD = syscalls.EPOLL_CTL_MOD
_DEL = syscalls.EPOLL_CTL_DEL
# Tags run from 1 to 2**32 - 1 (0 is "no tag": a level-triggered or one-shot
# registration), then start again: a registration would have to outlive four
# billion others to be mistaken for a current one.
_LAST_TAG = 0xFFFFFFFF
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
        # Edge-triggered registrations (compiled only; see watch_edges): each
        # one's tag, the socket it was made for (weakly) with the directions
        # it has, and those reported readable while nobody was reading.
        self._edge_tags: dict[int, int] = {}
        self._edge_owners: dict[int, tuple[weakref.ref[Any], int]] = {}
        self._missed: set[int] = set()
        self._last_tag = 0

    def fileno(self) -> int:
        return self._epoll.fileno()

    def set_interest(self, fd: int, events: int) -> None:
        events &= READABLE | WRITABLE
        old = self._interest.get(fd, 0)
        if events == old:
            return
        if self._edge_tags and fd in self._edge_tags:
            if not events & ~old:
                # A watch ended: the edge-triggered registration stays as it
                # is, for the next wait on this socket.
                if events:
                    self._interest[fd] = events
                else:
                    del self._interest[fd]
                return
            # A watch without the edge promise: level-triggered from now on.
            self._forget_edges(fd)
            self._rearm(fd, events)
            self._interest[fd] = events
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
                self._ctl(_DEL, fd, 0, 0)
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

    def watch_edges(self, fd: int, events: int, owner: object) -> None:
        """:meth:`set_interest` for watchers that retry until EAGAIN (see the module's docstring).

        Compiled, the registration is edge-triggered and kept between watches
        of the same ``owner``: no system call per wait.  Interpreted (no tags),
        exactly :meth:`set_interest`.
        """
        events &= READABLE | WRITABLE
        if not syscalls.EDGE_TAGS or not events:
            self.set_interest(fd, events)
            return
        owned = self._edge_owners.get(fd)
        if owned is not None and owned[0]() is owner and syscalls.socket_fileno(owner) == fd:
            # Our registration for this socket, still in the kernel.
            registered = owned[1]
            if events & ~registered:
                # A direction it lacks (a first wait to write): add it, once.
                registered |= events
                self._rearm(fd, registered | _EDGE, self._edge_tags[fd])
                self._edge_owners[fd] = (owned[0], registered)
                self._missed.discard(fd)
            elif events & READABLE and self._missed and fd in self._missed:
                # Data came while nobody was reading: have the kernel look again.
                self._rearm(fd, registered | _EDGE, self._edge_tags[fd])
                self._missed.discard(fd)
            self._interest[fd] = events
            return
        if self._interest.get(fd, 0) and fd not in self._edge_tags:
            # A level-triggered watch on this descriptor already: it serves
            # this one too.
            self.set_interest(fd, events)
            return
        try:
            reference = weakref.ref(owner)
        except TypeError:  # an owner without weak references: no reuse
            self.set_interest(fd, events)
            return
        tag = self._last_tag % _LAST_TAG + 1
        self._last_tag = tag
        # Whatever the number had (a parked one-shot registration, another
        # socket's, none), the kernel says which in the call.
        if fd in self._parked or fd in self._edge_tags:
            self._rearm(fd, events | _EDGE, tag)
        else:
            self._register(fd, events | _EDGE, tag)
        self._armed.discard(fd)
        self._fired.discard(fd)
        self._parked.discard(fd)
        self._transient.pop(fd, None)
        self._missed.discard(fd)
        self._edge_tags[fd] = tag
        self._edge_owners[fd] = (reference, events)
        self._interest[fd] = events

    def _register(self, fd: int, mask: int, tag: int = 0) -> None:
        try:
            self._ctl(_ADD, fd, mask, tag)
        except FileExistsError:
            # A number we had forgotten is still in the set: it was closed
            # and reused without being unregistered.
            self._ctl(_MOD, fd, mask, tag)

    def _rearm(self, fd: int, mask: int, tag: int = 0) -> None:
        try:
            # (_ctl's MOD, written out: interpreted, this re-arms a one-shot
            # registration at every wait, and a frame more costs ~700
            # instructions.)
            if syscalls.EDGE_TAGS:
                syscalls.epoll_ctl(self._epoll, self._epfd, _MOD, fd, mask, tag << 32)
            else:
                self._epoll.modify(fd, mask)
        except FileNotFoundError:
            # The number names a file that is not in the set (the one that
            # was registered has been closed): register this one.
            self._ctl(_ADD, fd, mask, tag)
        except OSError as exc:
            if exc.errno == errno.EBADF:
                self._forget(fd)  # closed: the kernel has no registration left
            raise

    def _ctl(self, op: int, fd: int, mask: int, tag: int) -> None:
        # Compiled, the call in C with the event's data whole; interpreted,
        # the epoll methods, which take no data (no tags).
        syscalls.epoll_ctl(self._epoll, self._epfd, op, fd, mask, tag << 32)

    def _forget_edges(self, fd: int) -> None:
        del self._edge_tags[fd]
        del self._edge_owners[fd]
        self._missed.discard(fd)

    def _forget(self, fd: int) -> None:
        self._interest.pop(fd, None)
        self._armed.discard(fd)
        self._fired.discard(fd)
        self._parked.discard(fd)
        if fd in self._edge_tags:
            self._forget_edges(fd)

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
            self._epoll, self._epfd, self._buffer, timeout, self._maxevents, self._edge_tags
        )
        self._polls += 1
        if len(events) == self._maxevents:
            self._grow()
        if self._edge_tags:
            # Whether the caller reads what these events report is not known
            # here: each edge-triggered one counts as missed, so the next wait
            # on it has the kernel look again; and one nobody watches now (a
            # registration kept between waits) is not reported.
            wanted = []
            for fd, mask in events:
                if fd in self._edge_tags:
                    self._missed.add(fd)
                    if not self._interest.get(fd, 0):
                        continue
                wanted.append((fd, mask))
            events = wanted
        if self._armed:
            armed = self._armed
            fired = self._fired
            for fd, _ in events:
                if fd in armed:
                    armed.discard(fd)
                    fired.add(fd)
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
            self._edge_tags,
            self._missed,
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
        for records in (self._armed, self._fired, self._parked, self._missed):
            records.clear()
        self._transient.clear()
        self._edge_tags.clear()
        self._edge_owners.clear()
        self._interest.clear()
        self._epfd = -1
        self._epoll.close()

