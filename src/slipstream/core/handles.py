"""Callback handles: what ``call_soon``, ``call_later`` and ``add_reader`` return.

A handle is a callback, its arguments and the :mod:`contextvars` context it runs
in.  The loop runs handles; user code may only cancel them.  The public API is
asyncio's: ``cancel()``, ``cancelled()``, ``get_context()``, ``when()`` on
timers, and the same ``repr``.

They are our own classes rather than subclasses of :class:`asyncio.Handle`: with
the compiled core (``handles.pxd`` beside this file) they are C extension types,
and an extension type cannot derive from a Python class.  Nothing in asyncio
checks the type of a handle; only ``isinstance(h, asyncio.Handle)`` tells them
apart, as it does for uvloop's handles.

They are deliberately plain: ``__slots__``, no properties, and the loop reads
the slots directly, because creating and running a handle is the single most
frequent thing an event loop does.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import reprlib
import sys
import traceback
import types
from collections.abc import Callable
from typing import Any

DEBUG_STACK_DEPTH = 10
"""How many frames debug mode records for where a handle was created."""

# Frames of these modules are the loop's own machinery: a "created at" stack
# ends at the code that called the loop, as asyncio's does.  (Compiled, these
# modules have no Python frames at all; interpreted, they must be skipped.)
_LOOP_MODULE_PREFIX = __name__.rpartition(".")[0] + "."


# Python 3.13 stopped showing a callback's arguments in reprs and error messages
# unless the loop is in debug mode (they may hold secrets); follow the running one.
_ARGUMENTS_ONLY_IN_DEBUG = sys.version_info >= (3, 13)


def describe_callback(
    callback: object, args: tuple[Any, ...] | None = (), debug: bool = True
) -> str:
    """Render ``callback(*args)`` the way asyncio's reprs and log messages do.

    A :func:`functools.partial` shows as the wrapped function with the
    partial's arguments first, then the call's: ``f(1)(2)``.  On Python 3.13+
    the arguments show only if ``debug`` (the loop's debug mode), as asyncio's.
    """
    show = debug or not _ARGUMENTS_ONLY_IN_DEBUG
    keywords: dict[str, Any] | None = None
    suffix = ""
    function: object = callback
    while isinstance(function, functools.partial):
        suffix = _describe_arguments(args, keywords, show) + suffix
        args, keywords = function.args, function.keywords
        function = function.func
    name = getattr(function, "__qualname__", None) or getattr(function, "__name__", None)
    text = name if isinstance(name, str) else repr(function)
    return text + _describe_arguments(args, keywords, show) + suffix


def _describe_arguments(
    args: tuple[Any, ...] | None, keywords: dict[str, Any] | None, show: bool
) -> str:
    if not show:
        return "()"
    items = [reprlib.repr(arg) for arg in args or ()]
    items += [f"{key}={reprlib.repr(value)}" for key, value in (keywords or {}).items()]
    return "(" + ", ".join(items) + ")"


def callback_source(callback: object) -> tuple[str, int] | None:
    """``(filename, first line)`` of the Python function behind ``callback``, if there is one."""
    while True:
        try:
            callback = inspect.unwrap(callback)  # type: ignore[arg-type]
        except ValueError:
            return None
        if isinstance(callback, functools.partial | functools.partialmethod):
            callback = callback.func
            continue
        if isinstance(callback, types.FunctionType):
            code = callback.__code__
            return code.co_filename, code.co_firstlineno
        return None


def describe_callback_source(
    callback: object, args: tuple[Any, ...] | None, debug: bool = True
) -> str:
    """``describe_callback`` plus `` at FILE:LINE``, as in asyncio's handle reprs."""
    text = describe_callback(callback, args, debug)
    source = callback_source(callback)
    if source is not None:
        text += f" at {source[0]}:{source[1]}"
    return text


def capture_stack(frame: types.FrameType | None) -> traceback.StackSummary:
    """The stack from ``frame`` outwards, oldest first, for debug-mode "created at" reports.

    Source lines are not looked up here (that happens only if the stack is
    ever printed), which keeps debug mode affordable.
    """
    stack = traceback.StackSummary.extract(
        traceback.walk_stack(frame), limit=DEBUG_STACK_DEPTH, lookup_lines=False
    )
    stack.reverse()
    return stack


def creation_stack() -> traceback.StackSummary:
    """The stack of the code that called into the loop, for a handle created in debug mode."""
    frame: types.FrameType | None = sys._getframe(0)
    while frame is not None and str(frame.f_globals.get("__name__")).startswith(
        _LOOP_MODULE_PREFIX
    ):
        frame = frame.f_back
    return capture_stack(frame)


def describe_handle(handle: Handle) -> str:
    """What asyncio's log messages call ``handle``: its task if it runs a task's step.

    A task schedules its steps as handles whose callback is bound to the task
    (``__self__``); the debug-mode "Executing ... took" warning names the task
    then, ``<Task pending name='...' coro=<...>>``, not the wrapper.
    """
    owner = getattr(handle._callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        return repr(owner)
    return str(handle)


class HandleOwner:
    """The part of a loop that its handles read and notify: the scheduler derives from it.

    A handle asks its loop, when cancelled, whether debug mode is on and (a
    timer) tells it that the heap holds one more cancelled entry.  Through
    the loop's public methods that is two Python-level calls, each a method
    lookup through every class the event loop is made of.  Compiled, this
    class is a C type (``handles.pxd``) that the scheduler extends, so a
    handle reads ``_debug`` and calls ``_timer_cancelled`` as C; interpreted,
    it is an empty base class and they are an attribute and a method.
    """

    __slots__ = ()

    _debug: bool

    def _timer_cancelled(self) -> None:
        """A timer still in this loop's heap was cancelled (the scheduler overrides this)."""
        raise NotImplementedError


class Handle:
    """A scheduled callback; ``cancel()`` prevents it from running."""

    __slots__ = (
        "__weakref__",
        "_args",
        "_callback",
        "_cancelled",
        "_context",
        "_loop",
        "_repr",
        "_source_traceback",
    )

    def __init__(
        self,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: Any,
        context: contextvars.Context | None = None,
    ) -> None:
        self._callback: Callable[..., object] | None = callback
        self._args: tuple[Any, ...] | None = args
        self._loop: Any = loop
        self._context: contextvars.Context = (
            contextvars.copy_context() if context is None else context
        )
        self._cancelled: bool = False
        self._repr: str | None = None
        self._source_traceback: traceback.StackSummary | None = (
            creation_stack() if loop.get_debug() else None
        )

    def __repr__(self) -> str:
        if self._repr is not None:
            return self._repr
        return "<" + " ".join(self._repr_info()) + ">"

    def _repr_info(self) -> list[str]:
        info = [type(self).__name__]
        if self._cancelled:
            info.append("cancelled")
        if self._callback is not None:
            info.append(
                describe_callback_source(self._callback, self._args, self._loop.get_debug())
            )
        if self._source_traceback:
            frame = self._source_traceback[-1]
            info.append(f"created at {frame.filename}:{frame.lineno}")
        return info

    def get_context(self) -> contextvars.Context:
        """The context the callback runs in."""
        return self._context

    def cancelled(self) -> bool:
        """Whether ``cancel()`` was called."""
        return self._cancelled

    def cancel(self) -> None:
        """Prevent the callback from running (no-op if it already ran or was cancelled)."""
        if not self._cancelled:
            loop = self._loop
            if isinstance(loop, HandleOwner):
                owner = loop
                self._cancel(owner._debug)
            else:
                self._cancel(loop.get_debug())

    def _cancel(self, debug: bool) -> None:
        self._cancelled = True
        if debug:
            # Keep a readable repr for debug logs after the references go.
            self._repr = repr(self)
        self._callback = None
        self._args = None

    def _run(self) -> None:
        """Run the callback, reporting (not raising) an ordinary exception."""
        try:
            self._context.run(self._callback, *self._args)  # type: ignore[arg-type, misc]
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.report_callback_error(self, exc)
        # A failed task's traceback can keep this frame alive (interpreted);
        # do not let it keep the handle, and through it the task, alive too.
        del self


class TimerHandle(Handle):
    """A callback scheduled for a point in loop time (``loop.time()``)."""

    __slots__ = ("_scheduled", "_when")

    def __init__(
        self,
        when: float,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: Any,
        context: contextvars.Context | None = None,
    ) -> None:
        Handle.__init__(self, callback, args, loop, context)
        self._when: float = when
        # True while the handle sits in the loop's timer heap; the loop uses it
        # to count cancelled timers still occupying the heap.
        self._scheduled: bool = False

    def _repr_info(self) -> list[str]:
        info = Handle._repr_info(self)
        info.insert(2 if self._cancelled else 1, f"when={self._when}")
        return info

    def when(self) -> float:
        """The loop time the callback is scheduled for."""
        return self._when

    def cancel(self) -> None:
        """Prevent the callback from running; tells the loop a timer left its heap early."""
        if self._cancelled:
            return
        if self._scheduled:
            # Only the scheduler's own heap sets _scheduled, so the loop is
            # one: compiled, this is one type check and C calls (HandleOwner).
            owner = self._loop
            owner._timer_cancelled()
            self._cancel(owner._debug)
        else:
            Handle.cancel(self)

    # Timers order by their deadline, as asyncio's do (the loop's heap does not
    # use these: it orders (when, sequence, handle) tuples).

    def __hash__(self) -> int:
        return hash(self._when)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TimerHandle):
            return NotImplemented
        return (
            self._when == other._when
            and self._callback == other._callback
            and self._args == other._args
            and self._cancelled == other._cancelled
        )

    def __lt__(self, other: TimerHandle) -> bool:
        if not isinstance(other, TimerHandle):
            return NotImplemented
        return self._when < other._when

    def __le__(self, other: TimerHandle) -> bool:
        if not isinstance(other, TimerHandle):
            return NotImplemented
        return self._when < other._when or self == other

    def __gt__(self, other: TimerHandle) -> bool:
        if not isinstance(other, TimerHandle):
            return NotImplemented
        return self._when > other._when

    def __ge__(self, other: TimerHandle) -> bool:
        if not isinstance(other, TimerHandle):
            return NotImplemented
        return self._when > other._when or self == other
