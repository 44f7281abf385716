"""The loop core: the ready queue, the timer heap, readiness callbacks and one turn.

Design rules for this module (the rest of slipstream depends on them):

* It knows nothing of sockets, transports, TLS or subprocesses.  Those are
  built elsewhere on the public methods defined here (``call_soon``,
  ``call_at``, ``add_reader``, ``add_writer``, ...), and the class that users
  get, :class:`slipstream.EventLoop`, is this core plus those layers.
* :meth:`CoreLoop._run_once` is the only place where callbacks are run.
* The hot path is flat: the ready queue is a deque of handles, timers are
  ``(when, sequence, handle)`` tuples in a heap (so ordering is done by C tuple
  comparison, not a Python ``__lt__``), and readiness is a dict lookup from the
  descriptor to a long-lived handle: nothing is allocated per I/O event.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import heapq
import itertools
import os
import socket
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar, TypeVarTuple

from ..backends import READ_EVENTS, READABLE, WRITABLE, WRITE_EVENTS, IOBackend, create_backend
from .errors import ErrorReporting, logger
from .executors import ExecutorSupport
from .handles import Handle, TimerHandle

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")

# When more than this many timers are cancelled and they make up more than half
# of the heap, the heap is rebuilt without them (a server that arms and cancels a
# timeout per request would otherwise grow the heap without bound).
_MIN_CANCELLED_TIMERS_TO_PURGE = 100

FileDescriptorLike = int | Any
"""A descriptor number or an object with a ``fileno()`` method."""

_COROUTINE_ORIGIN_DEPTH = 10

# How long a busy loop (one with callbacks always ready) may go without peeking
# at I/O.  Small enough to be invisible as latency, large enough to skip most
# zero-timeout polls when callbacks are short.
_POLL_SKIP_WINDOW = 50e-6


def fileobj_to_fd(fileobj: FileDescriptorLike) -> int:
    """The descriptor of ``fileobj`` (an int or anything with ``fileno()``)."""
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"Invalid file object: {fileobj!r}") from None
    if fd < 0:
        raise ValueError(f"Invalid file descriptor: {fd}")
    return fd


def _debug_from_environment() -> bool:
    return sys.flags.dev_mode or (
        not sys.flags.ignore_environment and bool(os.environ.get("PYTHONASYNCIODEBUG"))
    )


class CoreLoop(ErrorReporting, ExecutorSupport, asyncio.AbstractEventLoop):
    """Scheduling, timers, readiness and lifecycle of an event loop."""

    slow_callback_duration: float = 0.1

    def __init__(self, backend: IOBackend | None = None) -> None:
        self._backend = backend if backend is not None else create_backend()
        self._ready: collections.deque[Handle] = collections.deque()
        self._timers: list[tuple[float, int, TimerHandle]] = []
        self._timer_sequence = itertools.count()
        self._cancelled_timers = 0
        self._readers: dict[int, Handle] = {}
        self._writers: dict[int, Handle] = {}
        # Which object (a transport) owns a descriptor; add_reader refuses it.
        # Weak, as asyncio's: a transport dropped unclosed must still be
        # collected (and warn), not be kept alive by this map.
        self._fd_owners: weakref.WeakValueDictionary[int, object] = weakref.WeakValueDictionary()
        self._clock_resolution = time.get_clock_info("monotonic").resolution
        self._closed = False
        self._stopping = False
        self._thread_id: int | None = None
        self._debug = _debug_from_environment()
        self._current_handle: Handle | None = None
        self._task_factory: Any = None
        self._asyncgens: set[Any] = set()
        self._asyncgens_shutdown_called = False
        self._iterations = 0
        self._last_poll = 0.0
        ErrorReporting.__init__(self)
        ExecutorSupport.__init__(self)
        # The wake-up pipe: another thread (call_soon_threadsafe, a finished
        # executor job) writes a byte to make a blocked poll() return.
        self._wakeup_read, self._wakeup_write = socket.socketpair()
        self._wakeup_read.setblocking(False)
        self._wakeup_write.setblocking(False)
        self.add_reader(self._wakeup_read.fileno(), self._drain_wakeup)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} running={self.is_running()} "
            f"closed={self._closed} debug={self._debug}>"
        )

    # -- lifecycle ----------------------------------------------------------

    def is_running(self) -> bool:
        return self._thread_id is not None

    def is_closed(self) -> bool:
        return self._closed

    def get_debug(self) -> bool:
        return self._debug

    def set_debug(self, enabled: bool) -> None:
        self._debug = enabled
        if self.is_running():
            self.call_soon_threadsafe(self._track_coroutine_origins, enabled)

    def _track_coroutine_origins(self, enabled: bool) -> None:
        # In debug mode a never-awaited coroutine's warning says where it was
        # created; that needs the interpreter to record coroutine origins.
        sys.set_coroutine_origin_tracking_depth(_COROUTINE_ORIGIN_DEPTH if enabled else 0)

    def _check_closed(self) -> None:
        if self._closed:
            raise RuntimeError("Event loop is closed")

    def _check_not_running(self) -> None:
        if self.is_running():
            raise RuntimeError("This event loop is already running")
        if asyncio._get_running_loop() is not None:
            raise RuntimeError("Cannot run the event loop while another loop is running")

    def _check_thread(self) -> None:
        if self._thread_id is not None and self._thread_id != threading.get_ident():
            raise RuntimeError(
                "Non-thread-safe operation invoked on an event loop other than the current one"
            )

    def run_forever(self) -> None:
        self._check_closed()
        self._check_not_running()
        self._track_coroutine_origins(self._debug)
        old_hooks = sys.get_asyncgen_hooks()
        self._thread_id = threading.get_ident()
        sys.set_asyncgen_hooks(firstiter=self._on_asyncgen_first_iter,
                               finalizer=self._on_asyncgen_finalize)
        try:
            asyncio._set_running_loop(self)
            run_once = self._run_once
            while True:
                run_once()
                if self._stopping:
                    break
        finally:
            self._stopping = False
            self._thread_id = None
            asyncio._set_running_loop(None)
            self._track_coroutine_origins(False)
            sys.set_asyncgen_hooks(*old_hooks)

    def run_until_complete(self, future: Generator[Any, None, _T] | Awaitable[_T]) -> _T:
        self._check_closed()
        self._check_not_running()
        new_task = not asyncio.isfuture(future)
        fut: asyncio.Future[_T] = asyncio.ensure_future(future, loop=self)  # type: ignore[arg-type]
        if new_task:
            # The task is an implementation detail of this call: if the loop
            # is interrupted, do not also log that it was destroyed pending.
            fut._log_destroy_pending = False  # type: ignore[attr-defined]
        fut.add_done_callback(_stop_loop_when_done)
        try:
            self.run_forever()
        except BaseException:
            if new_task and fut.done() and not fut.cancelled():
                # Mark the exception retrieved: it is propagating right now.
                fut.exception()
            raise
        finally:
            fut.remove_done_callback(_stop_loop_when_done)
        if not fut.done():
            raise RuntimeError("Event loop stopped before Future completed.")
        return fut.result()

    def stop(self) -> None:
        self._stopping = True

    def close(self) -> None:
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self._closed:
            return
        if self._debug:
            logger.debug("Close %r", self)
        self._closed = True
        self._ready.clear()
        for _, _, timer in self._timers:
            timer._scheduled = False
        self._timers.clear()
        self._cancelled_timers = 0
        self._shutdown_executor_nowait()
        for handle in (*self._readers.values(), *self._writers.values()):
            handle.cancel()
        self._readers.clear()
        self._writers.clear()
        self._wakeup_read.close()
        self._wakeup_write.close()
        self._backend.close()

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if not getattr(self, "_closed", True) and not self.is_running():
            _warn(f"unclosed event loop {self!r}", ResourceWarning, source=self)
            self.close()

    # -- time and scheduling ------------------------------------------------

    def time(self) -> float:
        return time.monotonic()

    def call_soon(
        self,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> Handle:
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if self._debug:
            self._check_thread()
            self._check_callback(callback, "call_soon")
        elif not callable(callback):
            self._check_callback(callback, "call_soon")
        handle = Handle(callback, args, self, context)
        if handle._source_traceback:
            del handle._source_traceback[-1]
        self._ready.append(handle)
        return handle

    def call_soon_threadsafe(
        self,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> Handle:
        self._check_closed()
        if self._debug or not callable(callback):
            self._check_callback(callback, "call_soon_threadsafe")
        handle = Handle(callback, args, self, context)
        if handle._source_traceback:
            del handle._source_traceback[-1]
        self._ready.append(handle)
        self._wake_up()
        return handle

    def call_later(
        self,
        delay: float,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> TimerHandle:
        if delay is None:
            raise TypeError("delay must not be None")
        timer = self.call_at(self.time() + delay, callback, *args, context=context)
        if timer._source_traceback:
            del timer._source_traceback[-1]
        return timer

    def call_at(
        self,
        when: float,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> TimerHandle:
        if when is None:
            raise TypeError("when cannot be None")
        self._check_closed()
        if self._debug:
            self._check_thread()
            self._check_callback(callback, "call_at")
        elif not callable(callback):
            self._check_callback(callback, "call_at")
        timer = TimerHandle(when, callback, args, self, context)
        if timer._source_traceback:
            del timer._source_traceback[-1]
        heapq.heappush(self._timers, (when, next(self._timer_sequence), timer))
        timer._scheduled = True
        return timer

    def timer_cancelled(self) -> None:
        """Called by a scheduled :class:`TimerHandle` when it is cancelled."""
        self._cancelled_timers += 1

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        # The name asyncio's own TimerHandle.cancel() calls; only reached if
        # someone schedules a stock asyncio.TimerHandle by hand.
        self.timer_cancelled()

    def _check_callback(self, callback: object, method: str) -> None:
        if asyncio.iscoroutine(callback) or asyncio.iscoroutinefunction(callback):
            raise TypeError(f"coroutines cannot be used with {method}()")
        if not callable(callback):
            raise TypeError(f"a callable object was expected by {method}(), got {callback!r}")

    # -- futures and tasks ----------------------------------------------------

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.Future(loop=self)

    def create_task(
        self,
        coro: Generator[Any, None, _T] | Awaitable[_T],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[_T]:
        self._check_closed()
        if self._task_factory is None:
            task: asyncio.Task[_T] = asyncio.Task(coro, loop=self, name=name, context=context)  # type: ignore[arg-type]
            if task._source_traceback:  # type: ignore[attr-defined]
                del task._source_traceback[-1]  # type: ignore[attr-defined]
        else:
            if context is None:
                task = self._task_factory(self, coro)
            else:
                task = self._task_factory(self, coro, context=context)
            if name is not None:
                task.set_name(name)
        return task

    def set_task_factory(self, factory: Any) -> None:
        if factory is not None and not callable(factory):
            raise TypeError("task factory must be a callable or None")
        self._task_factory = factory

    def get_task_factory(self) -> Any:
        return self._task_factory

    # -- readiness ---------------------------------------------------------------

    def claim_fd(self, fd: int, owner: object) -> None:
        """Record that ``owner`` (a transport) drives ``fd``; add_reader/add_writer refuse it."""
        self._fd_owners[fd] = owner

    def release_fd(self, fd: int, owner: object) -> None:
        """Undo :meth:`claim_fd` (no-op if another owner claimed ``fd`` since)."""
        if self._fd_owners.get(fd) is owner:
            del self._fd_owners[fd]

    def check_fd_unowned(self, fd: int) -> None:
        """Raise RuntimeError if a transport that is not closing owns ``fd`` (see claim_fd)."""
        owner = self._fd_owners.get(fd)
        if owner is not None and not getattr(owner, "is_closing", lambda: True)():
            raise RuntimeError(f"File descriptor {fd!r} is used by transport {owner!r}")

    def _update_interest(self, fd: int) -> None:
        events = (READABLE if fd in self._readers else 0) | (WRITABLE if fd in self._writers else 0)
        self._backend.set_interest(fd, events)

    def add_reader(
        self, fd: FileDescriptorLike, callback: Callable[[*_Ts], object], *args: *_Ts
    ) -> None:
        self._check_closed()
        fd = fileobj_to_fd(fd)
        self.check_fd_unowned(fd)
        self.watch_readable(fd, callback, *args)

    def add_writer(
        self, fd: FileDescriptorLike, callback: Callable[[*_Ts], object], *args: *_Ts
    ) -> None:
        self._check_closed()
        fd = fileobj_to_fd(fd)
        self.check_fd_unowned(fd)
        self.watch_writable(fd, callback, *args)

    def remove_reader(self, fd: FileDescriptorLike) -> bool:
        if self._closed:
            return False
        fd = fileobj_to_fd(fd)
        self.check_fd_unowned(fd)
        return self.unwatch_readable(fd)

    def remove_writer(self, fd: FileDescriptorLike) -> bool:
        if self._closed:
            return False
        fd = fileobj_to_fd(fd)
        self.check_fd_unowned(fd)
        return self.unwatch_writable(fd)

    # The watch_*/unwatch_* pair is add_reader & co. without the ownership
    # check: transports use them for the descriptors they own.

    def watch_readable(self, fd: int, callback: Callable[..., object], *args: Any) -> Handle:
        """Run ``callback(*args)`` whenever ``fd`` is readable (replaces any previous one).

        Returns the handle: it is cancelled once the callback is replaced or unwatched.
        """
        self._check_closed()
        handle = Handle(callback, args, self, None)
        old = self._readers.get(fd)
        self._readers[fd] = handle
        if old is None:
            try:
                self._update_interest(fd)
            except BaseException:
                del self._readers[fd]
                raise
        else:
            old.cancel()
        return handle

    def watch_writable(self, fd: int, callback: Callable[..., object], *args: Any) -> Handle:
        """Run ``callback(*args)`` whenever ``fd`` is writable (replaces any previous one).

        Returns the handle: it is cancelled once the callback is replaced or unwatched.
        """
        self._check_closed()
        handle = Handle(callback, args, self, None)
        old = self._writers.get(fd)
        self._writers[fd] = handle
        if old is None:
            try:
                self._update_interest(fd)
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

    # -- one turn of the loop ----------------------------------------------------

    def _run_once(self) -> None:
        """Poll for I/O, collect due timers, then run every callback that is ready.

        This is the only place where callbacks are run.  Callbacks scheduled
        while the batch runs wait for the next turn, so a callback that keeps
        rescheduling itself cannot starve I/O.
        """
        timers = self._timers
        heappop = heapq.heappop
        if self._cancelled_timers > _MIN_CANCELLED_TIMERS_TO_PURGE and (
            self._cancelled_timers * 2 > len(timers)
        ):
            self._purge_cancelled_timers()
        else:
            while timers and timers[0][2]._cancelled:
                heappop(timers)[2]._scheduled = False
                self._cancelled_timers -= 1

        ready = self._ready
        if ready or self._stopping:
            # Work is waiting, so only peek at I/O.  A zero-timeout poll is
            # still a syscall (~0.5 µs, a third of a callback's cost), so while
            # callbacks keep coming it is skipped if the last poll is recent:
            # I/O is still seen within _POLL_SKIP_WINDOW, and a stop() always
            # gets its final peek, as asyncio promises.
            now = self.time()
            if now - self._last_poll < _POLL_SKIP_WINDOW and not self._stopping:
                events = []
            else:
                self._last_poll = now
                events = self._backend.poll(0)
        else:
            timeout = max(0.0, timers[0][0] - self.time()) if timers else None
            events = self._backend.poll(timeout)
            self._last_poll = self.time()
        if events:
            readers = self._readers
            writers = self._writers
            for fd, mask in events:
                if mask & READ_EVENTS:
                    handle = readers.get(fd)
                    if handle is not None:
                        ready.append(handle)
                if mask & WRITE_EVENTS:
                    handle = writers.get(fd)
                    if handle is not None:
                        ready.append(handle)

        if timers:
            deadline = self.time() + self._clock_resolution
            while timers and timers[0][0] < deadline:
                timer = heappop(timers)[2]
                timer._scheduled = False
                if timer._cancelled:
                    self._cancelled_timers -= 1
                else:
                    ready.append(timer)

        self._iterations += 1
        timer = None  # type: ignore[assignment]
        if self._debug:
            self._run_ready_debug(len(ready))
            return
        popleft = ready.popleft
        for _ in range(len(ready)):
            handle = popleft()
            if handle._cancelled:
                continue
            try:
                handle._context.run(handle._callback, *handle._args)  # type: ignore[misc, arg-type]
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self.report_callback_error(handle, exc)
        # A traceback stored by a failed task keeps this frame (its caller)
        # alive, and the frame keeps its locals: drop the last handle so the
        # task is not kept alive by a cycle until the next gc run.
        handle = timer = None  # type: ignore[assignment]

    def _run_ready_debug(self, count: int) -> None:
        ready = self._ready
        for _ in range(count):
            handle = ready.popleft()
            if handle._cancelled:
                continue
            self._current_handle = handle
            started = self.time()
            try:
                handle._run()
            finally:
                self._current_handle = None
            elapsed = self.time() - started
            if elapsed >= self.slow_callback_duration:
                logger.warning("Executing %r took %.3f seconds", handle, elapsed)
        handle = None  # type: ignore[assignment]  # see _run_once

    def _purge_cancelled_timers(self) -> None:
        kept = []
        for entry in self._timers:
            timer = entry[2]
            if timer._cancelled:
                timer._scheduled = False
            else:
                kept.append(entry)
        heapq.heapify(kept)
        self._timers = kept
        self._cancelled_timers = 0

    # -- asynchronous generators ---------------------------------------------------

    def _on_asyncgen_first_iter(self, agen: Any) -> None:
        if self._asyncgens_shutdown_called:
            warnings.warn(
                f"asynchronous generator {agen!r} was scheduled after "
                "loop.shutdown_asyncgens() call",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )
        self._asyncgens.add(agen)

    def _on_asyncgen_finalize(self, agen: Any) -> None:
        self._asyncgens.discard(agen)
        if not self._closed:
            self.call_soon_threadsafe(self.create_task, agen.aclose())

    async def shutdown_asyncgens(self) -> None:
        self._asyncgens_shutdown_called = True
        if not self._asyncgens:
            return
        closing = list(self._asyncgens)
        self._asyncgens.clear()
        results = await asyncio.gather(*(agen.aclose() for agen in closing), return_exceptions=True)
        for result, agen in zip(results, closing, strict=True):
            if isinstance(result, Exception):
                self.call_exception_handler({
                    "message": f"an error occurred during closing of "
                    f"asynchronous generator {agen!r}",
                    "exception": result,
                    "asyncgen": agen,
                })


def _stop_loop_when_done(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        exc = fut.exception()
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            # run_forever() is already unwinding with this very exception.
            return
    fut.get_loop().stop()
