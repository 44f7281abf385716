"""Callback handles: what ``call_soon``, ``call_later`` and ``add_reader`` return.

A handle is a callback, its arguments and the :mod:`contextvars` context it runs
in.  The loop runs handles; user code may only cancel them.  These classes subclass
:class:`asyncio.Handle` and :class:`asyncio.TimerHandle` (same slots, same
``repr``, ``isinstance`` holds), but replace the parts that reach into the loop:
construction is cheaper, and cancelling a timer tells the loop through its
public ``timer_cancelled()`` instead of asyncio's private hook.

They are deliberately plain: ``__slots__``, no properties, and the loop's run
loop reads the slots directly, because creating and running a handle is the
single most frequent thing an event loop does.
"""

from __future__ import annotations

import asyncio
import contextvars
import reprlib
import sys
import traceback
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .loop import CoreLoop

DEBUG_STACK_DEPTH = 10
"""How many frames debug mode records for where a handle was created."""


def describe_callback(callback: object, args: tuple[Any, ...] = ()) -> str:
    """Render ``callback(*args)`` the way asyncio's reprs and log messages do."""
    inner = getattr(callback, "__wrapped__", None)
    if inner is not None and getattr(callback, "__func__", None) is None:
        callback = inner
    name = getattr(callback, "__qualname__", None) or getattr(callback, "__name__", None)
    text = name if name is not None else repr(callback)
    if args:
        text += "(" + ", ".join(reprlib.repr(a) for a in args) + ")"
    else:
        text += "()"
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


class Handle(asyncio.Handle):
    """A scheduled callback; ``cancel()`` prevents it from running."""

    __slots__ = ()

    _callback: Callable[..., object] | None
    _args: tuple[Any, ...] | None  # type: ignore[assignment]
    _source_traceback: traceback.StackSummary | None

    def __init__(
        self,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: CoreLoop,
        context: contextvars.Context | None = None,
    ) -> None:
        self._callback = callback
        self._args = args
        self._loop = loop
        self._context = contextvars.copy_context() if context is None else context
        self._cancelled = False
        self._repr = None
        self._source_traceback = capture_stack(sys._getframe(1)) if loop._debug else None

    def cancel(self) -> None:
        if not self._cancelled:
            self._cancel()

    def _cancel(self) -> None:
        self._cancelled = True
        if self._loop._debug:
            # Keep a readable repr for debug logs after the references go.
            self._repr = repr(self)  # type: ignore[assignment]
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
        # A failed task's traceback can keep this frame alive; do not let it
        # keep the handle (and through it the task) alive too.
        del self


class TimerHandle(asyncio.TimerHandle, Handle):
    """A callback scheduled for a point in loop time (``loop.time()``)."""

    __slots__ = ()

    def __init__(
        self,
        when: float,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: CoreLoop,
        context: contextvars.Context | None = None,
    ) -> None:
        # Handle.__init__ inlined: timers are created as often as callbacks.
        self._callback = callback
        self._args = args
        self._loop = loop
        self._context = contextvars.copy_context() if context is None else context
        self._cancelled = False
        self._repr = None
        self._source_traceback = capture_stack(sys._getframe(1)) if loop._debug else None
        self._when = when
        # True while the handle sits in the loop's timer heap; the loop uses it
        # to count cancelled timers still occupying the heap.
        self._scheduled = False

    def cancel(self) -> None:
        if not self._cancelled:
            if self._scheduled:
                self._loop.timer_cancelled()
            self._cancel()
