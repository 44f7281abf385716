"""The scheduling heart of the loop: ready queue, timer heap, readiness maps, one turn.

This module and :mod:`.handles` are the part of slipstream that runs once per
callback, so they are written to be compiled: ``scheduler.pxd`` and
``handles.pxd`` beside them declare C types for this very source, and
``pip install`` builds them with Cython where a C compiler exists (see
``setup.py``).  Uncompiled, the same source is the loop; ``SLIPSTREAM_PURE=1``
forces that even when the compiled modules are installed.  So the code here
has to be fast twice: as CPython bytecode and as C.  What follows from that:

* The ready queue is two lists used in turn, not a deque: a turn takes the
  whole list as its batch and installs the spare one for callbacks scheduled
  meanwhile.  Iterating a list is cheaper than ``popleft()`` interpreted, and
  compiled it is a C loop over an array.
* Handles are built field by field (``Handle.__new__`` plus slot stores) in
  one place per kind (``_schedule``, ``_schedule_timer``), not through
  ``Handle(...)``: compiled, that is a direct allocation with no argument
  parsing.
* Timers are ``(when, sequence, handle)`` tuples in a :mod:`heapq` heap, so
  ordering is done by C tuple comparison, never by a Python ``__lt__``.
* The clock is read at most once per turn (twice if the turn polled), and
  not at all while callbacks are ready and there is nothing to poll for; it
  and the context calls come from :mod:`.primitives`, which the compiled
  build turns into inline C.
* Readiness is a dict lookup from the descriptor to a long-lived handle:
  nothing is allocated per I/O event.
* The compiled build's C types live only in the ``.pxd`` files; the
  annotations here are for the type checker and Cython ignores them, so both
  builds accept exactly the same arguments.

:class:`Scheduler` knows nothing of sockets, transports or asyncio's policy
machinery (it makes asyncio's tasks and futures, as every loop does);
:class:`slipstream.core.loop.CoreLoop` builds the rest of the event loop API
on it.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar, TypeVarTuple

from ..backends import READABLE, WRITABLE, PollingBackend, complete_backend
from . import primitives
from .errors import logger
from .handles import Handle, HandleOwner, TimerHandle, creation_stack, describe_handle

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")

# This module's file: a frame of it shows the interpreted build at work.
_SOURCE_FILE = __file__
_context_run = contextvars.Context.run
_heappush = heapq.heappush
_heappop = heapq.heappop
# Bound once, as the other module-level names of the hot path: compiled, a C
# variable.  Looked up as asyncio.Future on every call, the two module
# attribute lookups cost ~400 instructions, as much as a tenth of what a
# future costs to make (streams and sock_* make one per message).
_Future = asyncio.Future
_Task = asyncio.Task

# Handles that have run and that nothing else refers to, kept for _schedule to
# fill in again (compiled only: primitives.unshared).  Most handles are made
# by call_soon for a task's next step or a future's callback, and the caller
# drops the handle at once; allocating one and freeing it after its run was
# ~450 instructions of a streams round trip's ~29,000 (the allocation, the
# garbage collector's bookkeeping, the release), and a recycled one costs a
# list pop and four stores.  Shared by the loops of a process, as a free list
# is; bounded, so a burst of callbacks does not keep its handles for good.
_free_handles: list[Handle] = []
_FREE_HANDLES_MAX = 256
_RECYCLE_HANDLES = primitives.compiled()

# When more than this many timers are cancelled and they make up more than half
# of the heap, the heap is rebuilt without them (a server that arms and cancels a
# timeout per request would otherwise grow the heap without bound).
_MIN_CANCELLED_TIMERS_TO_PURGE = 100

# The zero timeout as one float object: compiled, the turn's timeout is a C
# double, and boxing it for every peek at I/O made a float each time.
_NO_WAIT = 0.0

# How long a busy loop (one with callbacks or timers always due) may go without
# peeking at I/O.  Small enough to be invisible as latency, large enough to skip
# most zero-timeout polls when callbacks are short.
_POLL_SKIP_WINDOW = 50e-6

LAG_BUCKETS = 32
"""How many buckets the timer-lateness histogram has: bucket ``i`` counts lateness
under ``2**i`` microseconds (and at least half that), the last one everything above."""
_LAG_TOP_BUCKET = LAG_BUCKETS - 1
_NO_LAG = (0,) * LAG_BUCKETS


def keep_attributes_inline(cls: type) -> bool:
    """Give the instances of ``cls``, a Python class over :class:`Scheduler`, inline attributes.

    Compiled, :class:`Scheduler` is a C type, and CPython 3.11 and 3.12 give
    an instance of a Python class over it a real ``__dict__`` instead of the
    inline values an ordinary instance has; then no lookup on the loop from
    Python code is specialised, and ``loop.create_future()`` costs a type
    lookup and a dict lookup on every call (``primitives.pxd`` has the
    details and the remedy).  Call it on each such class before making
    instances (``CoreLoop.__init_subclass__`` does).  Returns whether the
    class's allocation changed; interpreted, there is nothing to change.
    """
    return primitives.inline_instance_values(cls)


def own_compiled_methods(cls: type, names: tuple[str, ...]) -> int:
    """Give ``cls``, a Python class over :class:`Scheduler`, its own copies of these methods.

    Compiled, the scheduler's methods are method descriptors that belong to
    :class:`Scheduler`: each call on a loop first checks that the loop is a
    Scheduler by walking its class's MRO, and the interpreter's specialised
    call of such a method only applies to an instance of exactly the class
    it belongs to.  Copies belonging to ``cls`` (the same C functions) avoid
    both; ``CoreLoop.__init_subclass__`` makes them for the methods called
    on every task, future and timer.  A method ``cls`` overrides is left
    alone.  Returns how many copies were made; interpreted, none.
    """
    return primitives.own_methods(cls, names)


class TurnCounters:
    """The statistics the turn of the loop keeps (read through ``Scheduler.statistics()``).

    One object rather than attributes of the loop: interpreted, the loop's
    instance dictionary stays small enough for CPython to share its keys
    (past 30 names every attribute access of the loop gets slower);
    compiled, this is a C struct the turn updates in place.  The loop holds
    None instead when counting is off (``SLIPSTREAM_METRICS=0``).
    """

    __slots__ = (
        "batches", "callbacks_run", "idle_turns", "lag_counts", "lag_max", "lag_sum",
        "last_poll_end", "longest_stretch", "poll_time", "run_started", "run_time",
        "slowest_callback", "slowest_callback_name", "timers_cancelled",
    )

    def __init__(self) -> None:
        self.batches = 0
        self.idle_turns = 0
        self.callbacks_run = 0
        self.timers_cancelled = 0
        self.lag_counts = list(_NO_LAG)
        self.lag_max = 0.0
        self.lag_sum = 0.0
        self.poll_time = 0.0
        self.run_time = 0.0
        self.run_started = 0.0
        self.last_poll_end = 0.0
        self.longest_stretch = 0.0
        self.slowest_callback = 0.0
        self.slowest_callback_name = ""


class Scheduler(HandleOwner):
    """Ready queue, timers, readiness callbacks and the turn of the loop that runs them.

    The public scheduling methods (``call_soon``, ``call_later``, ``call_at``,
    ``call_soon_threadsafe``, ``time``, ``stop``) behave as asyncio documents
    them.  They return handles of :mod:`slipstream.core.handles`, which have
    asyncio's handle API; the annotations say ``asyncio.Handle`` because that
    is the interface :class:`asyncio.AbstractEventLoop` promises (see the note
    in :meth:`call_soon`).
    """

    slow_callback_duration: float = 0.1

    def __init__(self, backend: PollingBackend) -> None:
        self._closed = True  # until construction succeeds (see CoreLoop.__del__)
        # Each turn the backend appends the handles of the ready descriptors
        # to the turn's list itself (IOBackend.poll_ready).  complete_backend
        # makes any backend a ReadyBackend, and compiled, that is the C type
        # the field is declared as (scheduler.pxd): the call of every turn is
        # a C call through its function table, not a method looked up by
        # name, with its arguments parsed and its count boxed (~300
        # instructions a poll; backends/ready.py).
        #
        # (No bound poll_ready is kept beside it: interpreted, a loop object
        # has 29 attributes, and CPython stops sharing the key table of a
        # class's instance dicts, which is what lets it specialise self._x
        # loads, once they reach 30 keys.  With a 30th attribute every
        # self._x load of the interpreted build went through a dict lookup:
        # +10% on a sock_* round trip, measured.)
        self._backend = complete_backend(backend)
        self._ready: list[Handle] = []
        self._spare: list[Handle] = []
        self._timers: list[tuple[float, int, TimerHandle]] = []
        self._timer_sequence = 0
        self._cancelled_timers = 0
        self._readers: dict[int, Handle] = {}
        self._writers: dict[int, Handle] = {}
        # Whether any descriptor but the wake-up pipe is watched (kept by
        # _update_interest, which every change of the two maps goes through).
        self._io_watched = False
        self._clock_resolution = time.get_clock_info("monotonic").resolution
        # A subclass may define its own clock; otherwise the loop reads
        # time.monotonic without a method call.
        self._plain_clock = primitives.same_method(type(self).time, Scheduler.time)
        self._next_peek = 0.0
        self._stopping = False
        # Metrics are on unless SLIPSTREAM_METRICS=0 (docs/observability.md
        # gives what they cost, in instructions).
        self._counters: TurnCounters | None = (
            None if os.environ.get("SLIPSTREAM_METRICS", "") == "0" else TurnCounters()
        )
        self._callback_sequence = 0
        self._thread_id: int | None = None
        self._debug = False
        self._current_handle: Handle | None = None
        self._task_factory: Any = None
        # The wake-up pipe: another thread (call_soon_threadsafe, a finished
        # executor job) writes a byte to make a blocked poll() return.
        self._wakeup_read, self._wakeup_write = socket.socketpair()
        self._wakeup_read.setblocking(False)
        self._wakeup_write.setblocking(False)
        self._closed = False
        self.watch_readable(self._wakeup_read.fileno(), self._drain_wakeup)

    # -- statistics -------------------------------------------------------------
    # Counted where the loop already is: integers bumped once per batch or per
    # timer, and times taken from the clock reads a polling turn does anyway, so
    # that they can always be on.  Reading them is statistics(); making sense of
    # them (percentiles, rates, deltas) is slipstream.observe's job.

    def statistics(self) -> tuple[Any, ...] | None:
        """The loop's raw counters for :mod:`slipstream.observe`; None if it does not count.

        A flat tuple, in this order: turns, callbacks run, timers scheduled,
        timers cancelled while pending, timers fired (taken from the heap as
        due), the timer-lateness histogram (a tuple of :data:`LAG_BUCKETS`
        counts: one sample per turn that had timers due, its most overdue
        timer's lateness), the largest lateness and the sum of all (seconds),
        seconds run (inside ``run_forever``), seconds spent in the poller, the
        loop time the current run started at (0.0 if not running), the longest
        stretch between two polls (seconds: callbacks held the loop), and the
        slowest single callback, seconds and description (debug mode only:
        that is where each callback is timed).  Counts are since the loop was
        made.
        """
        counters = self._counters
        if counters is None:
            return None
        pending = len(self._timers) - self._cancelled_timers
        return (
            counters.batches + counters.idle_turns,
            counters.callbacks_run,
            self._timer_sequence,
            counters.timers_cancelled,
            self._timer_sequence - counters.timers_cancelled - pending,
            # Through self, not the local: so the compiled build knows the C
            # array (None was ruled out just above).
            tuple(self._counters.lag_counts),  # type: ignore[union-attr]
            counters.lag_max,
            counters.lag_sum,
            counters.run_time,
            counters.poll_time,
            counters.run_started if self._thread_id is not None else 0.0,
            counters.longest_stretch,
            counters.slowest_callback,
            counters.slowest_callback_name,
        )

    def watch_callbacks(self, enabled: bool) -> None:
        """Number every callback as it starts, for a watchdog thread (see :meth:`current_callback`).

        Off by default: then the turn runs its batch without this bookkeeping.
        """
        self._callback_sequence = 1 if enabled else 0

    def current_callback(self) -> tuple[int, Handle | None]:
        """``(sequence number, handle)`` of the running callback; the handle is None between them.

        The number grows by one per callback started while :meth:`watch_callbacks`
        is on (0 while it is off); another thread may read this (a watchdog): if
        it sees the same number and a handle twice, the loop has been inside
        that one callback all the while.
        """
        return self._callback_sequence, self._current_handle

    # Provided by the classes the loop is composed of (ErrorReporting); declared
    # here so the scheduler can be compiled and type-checked on its own.

    def report_callback_error(self, handle: Handle, exc: BaseException) -> None:
        """Report an exception that escaped the callback of ``handle``."""
        raise NotImplementedError

    # -- state ----------------------------------------------------------------

    def is_running(self) -> bool:
        return self._thread_id is not None

    def is_closed(self) -> bool:
        return self._closed

    def get_debug(self) -> bool:
        return self._debug

    def stop(self) -> None:
        self._stopping = True

    def _check_closed(self) -> None:
        if self._closed:
            raise RuntimeError("Event loop is closed")

    def _check_thread(self) -> None:
        if self._thread_id is not None and self._thread_id != threading.get_ident():
            raise RuntimeError(
                "Non-thread-safe operation invoked on an event loop other than the current one"
            )

    def _check_callback(self, callback: object, method: str) -> None:
        if asyncio.iscoroutine(callback) or asyncio.iscoroutinefunction(callback):
            raise TypeError(f"coroutines cannot be used with {method}()")
        if not callable(callback):
            raise TypeError(f"a callable object was expected by {method}(), got {callback!r}")

    # -- tasks and futures ----------------------------------------------------
    # Here, compiled, rather than in CoreLoop: every task and most futures are
    # made through these (asyncio.sleep() asks for a future, asyncio's
    # create_task for a task), and a Python method is a frame per call.

    def create_future(self) -> asyncio.Future[Any]:
        return _Future(loop=self)  # type: ignore[arg-type]  # (an AbstractEventLoop, once composed)

    def create_task(
        self,
        coro: Generator[Any, None, _T] | Awaitable[_T],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[_T]:
        if self._closed:
            raise RuntimeError("Event loop is closed")
        factory = self._task_factory
        if factory is None:
            task: asyncio.Task[_T] = _Task(coro, loop=self, name=name, context=context)  # type: ignore[arg-type]
            # A task made in debug mode records where; drop this method's
            # frame, as asyncio drops its create_task's.  Compiled, this
            # method has no frame, and the last one is the caller's own.
            # (Only in debug mode, the only one in which a task records it:
            # reading the attribute of a C Task costs ~150 instructions.)
            if self._debug:
                recorded = task._source_traceback  # type: ignore[attr-defined]
                if recorded and recorded[-1].filename == _SOURCE_FILE:
                    del recorded[-1]
            return task
        if context is None:
            task = factory(self, coro)
        else:
            task = factory(self, coro, context=context)
        if name is not None:
            task.set_name(name)
        return task

    def set_task_factory(self, factory: Any) -> None:
        if factory is not None and not callable(factory):
            raise TypeError("task factory must be a callable or None")
        self._task_factory = factory

    def get_task_factory(self) -> Any:
        return self._task_factory

    # -- time and scheduling ------------------------------------------------

    def time(self) -> float:
        return primitives.monotonic()

    def call_soon(
        self,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        # Our handles have asyncio.Handle's API but are not its subclasses
        # (compiled, they are C types, which cannot derive from a Python
        # class).  AbstractEventLoop's signature promises asyncio.Handle, so
        # that is what the annotation says, and the checker is told here.
        return self._schedule(callback, args, context, "call_soon")  # type: ignore[return-value]

    def _schedule(
        self,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        context: contextvars.Context | None,
        method: str,
    ) -> Handle:
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if self._debug:
            self._check_thread()
            self._check_callback(callback, method)
        elif not callable(callback):
            self._check_callback(callback, method)
        handle = _free_handles.pop() if _free_handles else Handle.__new__(Handle)
        handle._callback = callback
        handle._args = args
        handle._loop = self
        handle._context = primitives.copy_context() if context is None else context
        handle._cancelled = False
        handle._repr = None
        handle._source_traceback = creation_stack() if self._debug else None
        self._ready.append(handle)
        return handle

    def call_soon_threadsafe(
        self,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        self._check_closed()
        if self._debug or not callable(callback):
            self._check_callback(callback, "call_soon_threadsafe")
        handle = Handle(callback, args, self, context)
        self._ready.append(handle)
        self._wake_up()
        return handle  # type: ignore[return-value]  # see call_soon

    def call_later(
        self,
        delay: float,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        if delay is None:
            raise TypeError("delay must not be None")
        now = primitives.monotonic() if self._plain_clock else self.time()
        return self._schedule_timer(now + delay, callback, args, context, "call_later")  # type: ignore[return-value]  # see call_soon

    def call_at(
        self,
        when: float,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        if when is None:
            raise TypeError("when cannot be None")
        return self._schedule_timer(when, callback, args, context, "call_at")  # type: ignore[return-value]  # see call_soon

    def _schedule_timer(
        self,
        when: float,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        context: contextvars.Context | None,
        method: str,
    ) -> TimerHandle:
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if self._debug:
            self._check_thread()
            self._check_callback(callback, method)
        elif not callable(callback):
            self._check_callback(callback, method)
        timer = TimerHandle.__new__(TimerHandle)
        timer._callback = callback
        timer._args = args
        timer._loop = self
        timer._context = primitives.copy_context() if context is None else context
        timer._cancelled = False
        timer._repr = None
        timer._source_traceback = creation_stack() if self._debug else None
        timer._when = when
        timer._scheduled = True
        sequence = self._timer_sequence
        self._timer_sequence = sequence + 1
        _heappush(self._timers, (when, sequence, timer))
        return timer

    def timer_cancelled(self) -> None:
        """Count a cancelled timer that is still in the heap (the name asyncio's handles call)."""
        self._timer_cancelled()

    def _timer_cancelled(self) -> None:
        # What our TimerHandle.cancel() calls (as C when compiled: HandleOwner).
        self._cancelled_timers += 1
        counters = self._counters
        if counters is not None:
            counters.timers_cancelled += 1
        # Purged here, not only at the next turn: code that arms and cancels
        # many timers between two turns (a timeout per request, handled
        # without yielding) would otherwise keep every cancelled handle, its
        # context and its heap entry alive until then.  Hundreds of thousands
        # of live container objects make each cyclic-GC pass slower, and
        # there are more passes as they pile up; purged early, they die
        # young and their memory is reused at once.  The cost stays amortised
        # O(1) per cancellation (a purge needs more cancellations than half
        # the heap it walks).
        if self._cancelled_timers > _MIN_CANCELLED_TIMERS_TO_PURGE and (
            self._cancelled_timers * 2 > len(self._timers)
        ):
            self._purge_cancelled_timers()

    # -- readiness ---------------------------------------------------------------

    def _update_interest(self, fd: int, owner: object = None) -> None:
        # Compiled, a C method (scheduler.pxd), and set_interest a C call on
        # the backend (backends/ready.py): a sock_recv that waits makes this
        # call twice a message, and as method calls found by name on the
        # loop's and the backend's types the two calls cost ~1,000
        # instructions before doing anything.
        self._io_watched = len(self._readers) + len(self._writers) > 1
        events = (READABLE if fd in self._readers else 0) | (WRITABLE if fd in self._writers else 0)
        if owner is None:
            self._backend.set_interest(fd, events)
        else:
            self._backend.watch_edges(fd, events, owner)

    def watch_readable(self, fd: int, callback: Callable[..., object], *args: Any) -> Handle:
        """Run ``callback(*args)`` whenever ``fd`` is readable (replaces any previous one).

        Returns the handle: it is cancelled once the callback is replaced or unwatched.
        """
        return self.watch_readable_edge(fd, None, callback, *args)

    def watch_writable(self, fd: int, callback: Callable[..., object], *args: Any) -> Handle:
        """Run ``callback(*args)`` whenever ``fd`` is writable (replaces any previous one).

        Returns the handle: it is cancelled once the callback is replaced or unwatched.
        """
        return self.watch_writable_edge(fd, None, callback, *args)

    def watch_readable_edge(
        self, fd: int, owner: object, callback: Callable[..., object], *args: Any
    ) -> Handle:
        """:meth:`watch_readable`, for a callback that retries until the kernel says EAGAIN.

        The promise the caller makes: it starts the watch only once the
        operation it waits for has found ``fd`` not ready (or has just emptied
        it), and ``callback`` retries that operation and simply keeps
        watching while it finds nothing.  The backend may then use readiness
        that the kernel reports once per change (edge-triggered epoll), and
        a watch that ends and starts again on the same ``owner`` (the object
        the descriptor belongs to, a socket) costs no system call.  ``owner``
        None makes no promise: :meth:`watch_readable`.

        (The watch's body is here and in :meth:`watch_writable_edge`, not in a
        helper: these calls are a ``sock_*`` wait's, once a message, and
        interpreted a frame more costs ~700 instructions.)
        """
        if self._closed:  # (_check_closed, inline: a method call costs ~300 instructions here)
            raise RuntimeError("Event loop is closed")
        handle = Handle(callback, args, self, None)
        old = self._readers.get(fd)
        self._readers[fd] = handle
        if old is None:
            try:
                self._update_interest(fd, owner)
            except BaseException:
                del self._readers[fd]
                raise
        else:
            # The interest is the same; so is the registration, which serves
            # the new callback as it served the old one.
            old.cancel()
        return handle

    def watch_writable_edge(
        self, fd: int, owner: object, callback: Callable[..., object], *args: Any
    ) -> Handle:
        """:meth:`watch_writable` under the promise of :meth:`watch_readable_edge`."""
        if self._closed:
            raise RuntimeError("Event loop is closed")
        handle = Handle(callback, args, self, None)
        old = self._writers.get(fd)
        self._writers[fd] = handle
        if old is None:
            try:
                self._update_interest(fd, owner)
            except BaseException:
                del self._writers[fd]
                raise
        else:
            old.cancel()
        return handle

    def unwatch_readable(self, fd: int) -> bool:
        """Stop watching ``fd`` for reading; False if it was not watched."""
        handle = self._readers.pop(fd, None)
        if handle is None:
            return False
        handle.cancel()
        if not self._closed:
            self._update_interest(fd)
        return True

    def unwatch_writable(self, fd: int) -> bool:
        """Stop watching ``fd`` for writing; False if it was not watched."""
        handle = self._writers.pop(fd, None)
        if handle is None:
            return False
        handle.cancel()
        if not self._closed:
            self._update_interest(fd)
        return True

    def _wake_up(self) -> None:
        try:
            self._wakeup_write.send(b"\0")
        except OSError:
            # Full (the loop will wake anyway) or closed (nothing to wake).
            pass

    def _drain_wakeup(self) -> None:
        try:
            while self._wakeup_read.recv(4096):
                pass
        except OSError:
            pass

    def _close_scheduler(self) -> None:
        """Drop every callback, timer and watch, and release the wake-up pipe and backend."""
        self._closed = True
        self._ready.clear()
        for entry in self._timers:
            entry[2]._scheduled = False
        self._timers.clear()
        self._cancelled_timers = 0
        for handle in (*self._readers.values(), *self._writers.values()):
            handle.cancel()
        self._readers.clear()
        self._writers.clear()
        self._io_watched = False
        self._wakeup_read.close()
        self._wakeup_write.close()
        self._backend.close()

    # -- turns of the loop ---------------------------------------------------------

    def _run_until_stopped(self) -> None:
        """Run turns of the loop until ``stop()`` is called: the body of ``run_forever()``."""
        # The first turn of every run polls, however recent the last poll:
        # asyncio's turns always look at I/O, and code relies on one run
        # seeing what is pending -- run_until_complete() on a future that is
        # already done still delivers the events that arrived meanwhile
        # (CPython's test_sendfile checks a transport noticed its peer's
        # reset that way).  Only turns within a run may skip the peek.
        self._next_peek = 0.0
        counters = self._counters
        if counters is not None:
            counters.run_started = counters.last_poll_end = (
                primitives.monotonic() if self._plain_clock else self.time()
            )
        try:
            while True:
                self._run_once()
                if self._stopping:
                    break
        finally:
            self._stopping = False
            if counters is not None:
                now = primitives.monotonic() if self._plain_clock else self.time()
                counters.run_time += now - counters.run_started

    def _run_once(self) -> None:
        """Poll for I/O, collect due timers, then run every callback that is ready.

        This is the only place where callbacks are run.  Callbacks scheduled
        while the batch runs wait for the next turn, so a callback that keeps
        rescheduling itself cannot starve I/O.
        """
        if self._cancelled_timers:
            self._drop_cancelled_timers()
        ready = self._ready
        if not ready or self._timers or self._stopping or self._io_watched:
            self._gather(ready)
        # else: callbacks are ready, no timer is pending and nothing is watched
        # but the wake-up pipe (which can wait to be drained): no event and no
        # deadline can add to this turn, so there is nothing to poll for and
        # no clock to read.  A loop juggling tasks without I/O (and the
        # micro-benchmarks) spends its turns on callbacks alone.
        if not ready:
            counters = self._counters
            if counters is not None:
                counters.idle_turns += 1
            return
        # The batch is the whole ready list; callbacks it schedules go to the
        # spare list, which becomes the ready list now.  Each handle's slot is
        # cleared as it runs, so what a finished callback referenced can be
        # freed before the batch ends (a task done and forgotten is collected
        # at once, as in asyncio).
        self._ready = self._spare
        if self._debug or self._callback_sequence:
            self._run_batch_debug(ready)
            return
        done = 0
        try:
            for handle in ready:
                ready[done] = None  # type: ignore[call-overload]
                done += 1
                if handle._cancelled:
                    continue
                args = handle._args
                try:
                    # Spelled out by arity: a call without a star-argument
                    # needs no argument tuple, interpreted or compiled.
                    if not args:
                        primitives.run_in_context(handle._context, handle._callback)  # type: ignore[arg-type]
                    elif len(args) == 1:
                        primitives.run_in_context_with(handle._context, handle._callback, args[0])  # type: ignore[arg-type]
                    else:
                        _context_run(handle._context, handle._callback, *args)  # type: ignore[arg-type]
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self.report_callback_error(handle, exc)
                    continue
                if (
                    _RECYCLE_HANDLES
                    and primitives.unshared(handle)
                    and type(handle) is Handle
                    and len(_free_handles) < _FREE_HANDLES_MAX
                ):
                    # Nothing else can reach it: release what it held, as
                    # freeing it would, and keep it for _schedule.
                    handle._callback = None
                    handle._args = None
                    handle._context = None  # type: ignore[assignment]
                    handle._loop = None
                    _free_handles.append(handle)
        finally:
            self._finish_batch(ready, done)
        # A traceback stored by a failed task keeps this frame (its caller)
        # alive, and the frame keeps its locals: drop the last handle so the
        # task is not kept alive by a cycle until the next gc run.
        handle = None  # type: ignore[assignment]
        args = None

    def _gather(self, ready: list[Handle]) -> None:
        """Add to ``ready`` the callbacks of I/O events and of the timers that are due."""
        timers = self._timers
        counters = self._counters
        if ready and not timers and not self._stopping and self._next_peek < 0.0:
            # The turn right after a poll (_next_peek holds the end of the
            # window negated, see below), with callbacks to run and no timer:
            # nothing to poll for or collect, so no clock to read either.
            self._next_peek = -self._next_peek
            return
        now = primitives.monotonic() if self._plain_clock else self.time()
        if ready or self._stopping:
            timeout = 0.0
        elif timers:
            timeout = timers[0][0] - now
            if timeout < 0.0:
                timeout = 0.0
        else:
            timeout = -1.0
        # Work is waiting (ready callbacks, a due timer) so the poll would only
        # peek.  A zero-timeout poll is still a syscall (~0.3 µs, more than a
        # callback costs compiled), so while work keeps coming it is skipped
        # if it is not due: a stop() always gets its final peek, as asyncio
        # promises, and otherwise I/O is seen again once two things have
        # happened since the last poll.  One: a turn has run the callbacks
        # that the poll's events scheduled (a task woken by data runs before
        # the loop looks for more, as uvloop and rloop run their ready queue
        # before polling again).  Two: _POLL_SKIP_WINDOW has passed since the
        # poll ended.  So a request answered by a task costs one poll, not
        # two, however slowly the loop runs (under a profiler too), and a loop
        # with callbacks always ready still sees I/O every other turn or
        # every 50 µs, whichever is later.  The window is real time whatever
        # the loop's clock: a subclass's clock may stand still while
        # callbacks run (a virtual clock does), and measured on it the window
        # would never end and I/O would starve.  (The metrics' times are the
        # loop's clock, as everything it reports.)  The end of the window is
        # stored negated until the turn after the poll has begun: one double
        # for both facts (an interpreted loop keeps its attributes in a dict
        # that stops sharing its keys at 30, and it has 29).
        real_now = now if self._plain_clock else primitives.monotonic()
        if timeout != 0.0 or self._stopping or 0.0 <= self._next_peek <= real_now:
            if counters is not None:
                # Since the last poll the loop ran callbacks: the longest
                # stretch is the longest a ready descriptor waited unseen.
                stretch = now - counters.last_poll_end
                if stretch > counters.longest_stretch:
                    counters.longest_stretch = stretch
            started = now
            self._backend.poll_ready(
                None if timeout < 0.0 else timeout or _NO_WAIT,
                self._readers,
                self._writers,
                ready,
            )
            if self._plain_clock:
                now = primitives.monotonic()
                self._next_peek = -(now + _POLL_SKIP_WINDOW)
            else:
                now = self.time()
                self._next_peek = -(primitives.monotonic() + _POLL_SKIP_WINDOW)
            if counters is not None:
                counters.poll_time += now - started
                counters.last_poll_end = now
        elif self._next_peek < 0.0:
            # The turn after a poll, with timers: no peek, the window runs on.
            self._next_peek = -self._next_peek
        if timers:
            deadline = now + self._clock_resolution
            # (Read once into a C double, compiled: a comparison of the
            # Python float with deadline would box deadline first.)
            first_when = timers[0][0]
            if counters is not None and first_when < deadline:
                # One lateness per turn, the most overdue timer's (the heap
                # pops it first): how late the loop came round to its timers.
                lateness = now - first_when
                counters.lag_sum += lateness
                if lateness > counters.lag_max:
                    counters.lag_max = lateness
                bucket = primitives.lag_bucket(lateness)
                counters.lag_counts[bucket if bucket < _LAG_TOP_BUCKET else _LAG_TOP_BUCKET] += 1
            while timers and timers[0][0] < deadline:
                timer = _heappop(timers)[2]
                timer._scheduled = False
                if timer._cancelled:
                    self._cancelled_timers -= 1
                else:
                    ready.append(timer)

    def _finish_batch(self, batch: list[Handle], done: int) -> None:
        counters = self._counters
        if counters is not None:
            counters.batches += 1
            counters.callbacks_run += done
        if done < len(batch):
            # An exception (KeyboardInterrupt, SystemExit) left the batch
            # early: the callbacks it did not reach stay first in line.
            self._ready[0:0] = batch[done:]
        primitives.empty_list(batch)
        self._spare = batch

    def _run_batch_debug(self, batch: list[Handle]) -> None:
        # The batch of a loop in debug mode or watched by a watchdog: each
        # callback is counted and made current as it starts, and timed in
        # debug mode.
        done = 0
        debug = self._debug
        try:
            for handle in batch:
                batch[done] = None  # type: ignore[call-overload]
                done += 1
                if handle._cancelled:
                    continue
                if self._callback_sequence:
                    self._callback_sequence += 1
                self._current_handle = handle
                started = self.time() if debug else 0.0
                try:
                    handle._run()
                finally:
                    self._current_handle = None
                if debug:
                    elapsed = self.time() - started
                    if elapsed >= self.slow_callback_duration:
                        logger.warning(
                            "Executing %s took %.3f seconds", describe_handle(handle), elapsed
                        )
                    counters = self._counters
                    if counters is not None and elapsed > counters.slowest_callback:
                        counters.slowest_callback = elapsed
                        counters.slowest_callback_name = describe_handle(handle)
        finally:
            self._finish_batch(batch, done)
        handle = None  # type: ignore[assignment]  # see _run_once

    def _drop_cancelled_timers(self) -> None:
        timers = self._timers
        if self._cancelled_timers > _MIN_CANCELLED_TIMERS_TO_PURGE and (
            self._cancelled_timers * 2 > len(timers)
        ):
            self._purge_cancelled_timers()
        else:
            while timers and timers[0][2]._cancelled:
                _heappop(timers)[2]._scheduled = False
                self._cancelled_timers -= 1

    def _purge_cancelled_timers(self) -> None:
        timers = self._timers
        kept = []
        for entry in timers:
            timer = entry[2]
            if timer._cancelled:
                timer._scheduled = False
            else:
                kept.append(entry)
        heapq.heapify(kept)
        self._cancelled_timers = 0
        # In place and in one step.  A cancellation can purge while _gather
        # holds this list (a finaliser run by a freed handle may cancel a
        # timer), so the list must stay the heap; and the entries dropped
        # here are released only once the slice assignment has put the new
        # heap in place, so whatever their release runs sees a whole heap.
        timers[:] = kept
