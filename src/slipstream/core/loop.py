"""The event loop core: lifecycle, readiness API, async generators, the pre-bound hot methods.

Design rules for this package (the rest of slipstream depends on them):

* It knows nothing of sockets, transports, TLS or subprocesses.  Those are
  built elsewhere on the public methods defined here and in
  :mod:`.scheduler` (``call_soon``, ``call_at``, ``add_reader``,
  ``watch_readable``, ...), and the class that users get,
  :class:`slipstream.EventLoop`, is this core plus those layers.
* ``Scheduler._run_once`` (in :mod:`.scheduler`) is the only place where
  callbacks are run.  That module and :mod:`.handles` are the hot path and
  are compiled when a C compiler was available at install time; this module
  stays interpreted.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import warnings
import weakref
from collections.abc import Awaitable, Callable, Generator
from types import BuiltinMethodType, MethodDescriptorType
from typing import Any, TypeVar, TypeVarTuple

from ..backends import PollingBackend, create_backend
from .errors import ErrorReporting, logger
from .executors import ExecutorSupport
from .scheduler import Scheduler, keep_attributes_inline, own_compiled_methods

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")

FileDescriptorLike = int | Any
"""A descriptor number or an object with a ``fileno()`` method."""

_COROUTINE_ORIGIN_DEPTH = 10


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


def _no_owner_closing() -> bool:
    return True  # an owner without is_closing() never blocks a descriptor


# The compiled Scheduler methods called on the loop for every step, callback,
# task and future: asyncio's C Task schedules its steps with call_soon, each
# Future asks get_debug, sleep() makes a future and a call_later, timeouts use
# call_at and time, and every task comes from create_task.  See
# CoreLoop._prebind_hot_methods for why they are bound once per loop, and why
# only the first two where the loop keeps its attributes inline.
_PREBOUND_METHODS = (
    "call_soon", "call_at", "call_later", "time", "get_debug", "create_future", "create_task",
)
_PREBOUND_FOR_C = ("call_soon", "get_debug")


class CoreLoop(ErrorReporting, ExecutorSupport, Scheduler, asyncio.AbstractEventLoop):
    """Scheduling, timers, readiness and lifecycle of an event loop.

    :class:`Scheduler` holds the part that runs per callback, task and future
    (and is compiled when it can be); this class adds the lifecycle,
    ``add_reader`` and friends, asynchronous generators, error reporting and
    executors.
    """

    # Whether this class's instances keep their attributes inline (set for
    # each class by _prepare_loop_class; see _prebind_hot_methods).
    _inline_attributes = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _prepare_loop_class(cls)

    def __init__(self, backend: PollingBackend | None = None) -> None:
        Scheduler.__init__(self, backend if backend is not None else create_backend())
        ErrorReporting.__init__(self)
        ExecutorSupport.__init__(self)
        self._debug = _debug_from_environment()
        # Which object (a transport) owns a descriptor; add_reader refuses it.
        # Weak, as asyncio's: a transport dropped unclosed must still be
        # collected (and warn), not be kept alive by this map.  A plain dict
        # of weak references, not a WeakValueDictionary: check_fd_unowned runs
        # on every sock_recv that has to wait, and a WeakValueDictionary lookup
        # costs ~350 ns where this costs ~80.  A reference whose transport died
        # reads as "no owner" and is replaced by the next claim of the number.
        self._fd_owners: dict[int, weakref.ref[object]] = {}
        self._asyncgens: set[Any] = set()
        self._asyncgens_shutdown_called = False
        self._prebind_hot_methods()

    def _prebind_hot_methods(self) -> None:
        """Store the compiled hot methods, bound, in the loop's ``__dict__``.

        Compiled, ``Scheduler`` is a C type and its methods are method
        descriptors.  Called through such a descriptor, a method first checks
        that ``self`` is a Scheduler, by walking EventLoop's MRO to the 14th
        of its 17 classes (~80 instructions), and ``getattr`` (which asyncio's
        C Task uses for call_soon) allocates a bound method to throw away.  A
        bound method found in the instance ``__dict__`` is returned as it is
        and called without a type check.

        Which methods: where the loop's attributes are inline
        (:func:`~.scheduler.keep_attributes_inline`, CPython 3.11 and 3.12),
        the interpreter specialises ``loop.create_future()`` in Python code
        into a few instructions, unless an instance attribute shadows the
        method; so only the two that asyncio's C code calls by name, on every
        task step and every future (``call_soon``, ``get_debug``), are bound
        there.  Elsewhere (3.13, whose loop instances keep a real dict, on
        which no lookup is specialised) all seven are.  Callgrind, CPython
        3.12, inline attributes, own descriptors and these two bindings
        against binding all seven on a loop with a real dict: a streams echo
        round trip -370 instructions, a sock_* one -2,400 (the Python
        layers' own ``self.x`` lookups are specialised too).  See
        docs/benchmarks.md, "Compiled core".

        Only where it changes nothing else: not for the interpreted build
        (whose methods CPython already handles well) and not for a method a
        subclass overrides.  The bound methods refer to the loop, so the
        loop and its dict form a cycle; close() breaks it, and an unclosed
        loop is left to the cyclic collector, which still runs ``__del__``
        and its ResourceWarning.
        """
        cls = type(self)
        names = _PREBOUND_FOR_C if cls._inline_attributes else _PREBOUND_METHODS
        for name in names:
            # A compiled method (its own copy, see own_compiled_methods), not
            # an interpreted one or a subclass's override.
            if isinstance(getattr(cls, name), MethodDescriptorType):
                setattr(self, name, getattr(self, name))

    def _unbind_hot_methods(self) -> None:
        attributes = vars(self)
        for name in _PREBOUND_METHODS:
            bound = attributes.get(name)
            if isinstance(bound, BuiltinMethodType) and bound.__self__ is self:
                del attributes[name]

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} running={self.is_running()} "
            f"closed={self.is_closed()} debug={self.get_debug()}>"
        )

    # -- lifecycle ----------------------------------------------------------

    def set_debug(self, enabled: bool) -> None:
        self._debug = enabled
        if self.is_running():
            self.call_soon_threadsafe(self._track_coroutine_origins, enabled)

    def _track_coroutine_origins(self, enabled: bool) -> None:
        # In debug mode a never-awaited coroutine's warning says where it was
        # created; that needs the interpreter to record coroutine origins.
        sys.set_coroutine_origin_tracking_depth(_COROUTINE_ORIGIN_DEPTH if enabled else 0)

    def _check_not_running(self) -> None:
        if self.is_running():
            raise RuntimeError("This event loop is already running")
        if asyncio._get_running_loop() is not None:
            raise RuntimeError("Cannot run the event loop while another loop is running")

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
            self._run_until_stopped()
        finally:
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

    def close(self) -> None:
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        if self._debug:
            logger.debug("Close %r", self)
        self._shutdown_executor_nowait()
        self._close_scheduler()
        self._unbind_hot_methods()

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if not getattr(self, "_closed", True) and not self.is_running():
            _warn(f"unclosed event loop {self!r}", ResourceWarning, source=self)
            self.close()

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        # The name asyncio's own TimerHandle.cancel() calls; only reached if
        # someone schedules a stock asyncio.TimerHandle by hand.
        self.timer_cancelled()

    # -- readiness ---------------------------------------------------------------

    def claim_fd(self, fd: int, owner: object) -> None:
        """Record that ``owner`` (a transport) drives ``fd``; add_reader/add_writer refuse it."""
        self._fd_owners[fd] = weakref.ref(owner)

    def release_fd(self, fd: int, owner: object) -> None:
        """Undo :meth:`claim_fd` (no-op if another owner claimed ``fd`` since)."""
        ref = self._fd_owners.get(fd)
        if ref is not None and ref() is owner:
            del self._fd_owners[fd]

    def claimed_fd_owners(self) -> list[object]:
        """The live owners (transports) of the descriptors claimed with :meth:`claim_fd`."""
        owners = (ref() for ref in self._fd_owners.values())
        return [owner for owner in owners if owner is not None]

    def check_fd_unowned(self, fd: int) -> None:
        """Raise RuntimeError if a transport that is not closing owns ``fd`` (see claim_fd)."""
        ref = self._fd_owners.get(fd)
        if ref is not None:
            owner = ref()
            if owner is not None and not getattr(owner, "is_closing", _no_owner_closing)():
                raise RuntimeError(f"File descriptor {fd!r} is used by transport {owner!r}")

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


def _prepare_loop_class(cls: Any) -> None:
    """Ready a loop class for the interpreter's fast paths (compiled; see _prebind_hot_methods)."""
    cls._inline_attributes = keep_attributes_inline(cls)
    own_compiled_methods(cls, _PREBOUND_METHODS)


_prepare_loop_class(CoreLoop)  # (__init_subclass__ prepares its subclasses)


def _stop_loop_when_done(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        exc = fut.exception()
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            # run_forever() is already unwinding with this very exception.
            return
    fut.get_loop().stop()
