"""Callback handles: what ``call_soon``, ``call_later`` and ``add_reader`` return.

A handle is a callback, its arguments and the :mod:`contextvars` context it runs
in.  The loop runs handles; user code may only cancel them.  These classes mirror
the public surface of :class:`asyncio.Handle` and :class:`asyncio.TimerHandle`
(``cancel``, ``cancelled``, ``when``, ``get_context``), as uvloop's handles do.

They are deliberately plain: ``__slots__``, no properties, and the loop's run
loop reads the slots directly, because creating and running a handle is the
single most frequent thing an event loop does.
"""

from __future__ import annotations

import contextvars
import reprlib
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .loop import CoreLoop


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


class Handle:
    """A scheduled callback; ``cancel()`` prevents it from running."""

    __slots__ = (
        "_args",
        "_callback",
        "_cancelled",
        "_context",
        "_loop",
        "_repr",
        "_source_traceback",
        "__weakref__",
    )

    def __init__(
        self,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: CoreLoop,
        context: contextvars.Context | None = None,
    ) -> None:
        self._callback: Callable[..., object] | None = callback
        self._args: tuple[Any, ...] | None = args
        self._loop = loop
        self._context = contextvars.copy_context() if context is None else context
        self._cancelled = False
        self._repr: str | None = None
        self._source_traceback: traceback.StackSummary | None = (
            traceback.extract_stack(limit=20)[:-2] if loop._debug else None
        )

    def _describe(self) -> list[str]:
        parts = [type(self).__name__]
        if self._cancelled:
            parts.append("cancelled")
        if self._callback is not None:
            parts.append(describe_callback(self._callback, self._args or ()))
        if self._source_traceback:
            frame = self._source_traceback[-1]
            parts.append(f"created at {frame.filename}:{frame.lineno}")
        return parts

    def __repr__(self) -> str:
        if self._repr is not None:
            return self._repr
        return "<{}>".format(" ".join(self._describe()))

    def get_context(self) -> contextvars.Context:
        """The context the callback runs in."""
        return self._context

    def cancel(self) -> None:
        """Cancel the callback; a no-op if it already ran or was cancelled."""
        if not self._cancelled:
            self._cancelled = True
            if self._loop._debug:
                # Keep a readable repr for debug logs after the references go.
                self._repr = repr(self)
            self._callback = None
            self._args = None

    def cancelled(self) -> bool:
        """Whether ``cancel()`` was called."""
        return self._cancelled

    def _run(self) -> None:
        """Run the callback, reporting (not raising) an ordinary exception."""
        try:
            assert self._callback is not None and self._args is not None
            self._context.run(self._callback, *self._args)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.report_callback_error(self, exc)


class TimerHandle(Handle):
    """A callback scheduled for a point in loop time (``loop.time()``)."""

    __slots__ = ("_scheduled", "_when")

    def __init__(
        self,
        when: float,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: CoreLoop,
        context: contextvars.Context | None = None,
    ) -> None:
        super().__init__(callback, args, loop, context)
        self._when = when
        # True while the handle sits in the loop's timer heap; the loop uses it
        # to count cancelled timers still occupying the heap.
        self._scheduled = False

    def _describe(self) -> list[str]:
        parts = super()._describe()
        parts.insert(2 if self._cancelled else 1, f"when={self._when}")
        return parts

    def when(self) -> float:
        """The loop time at which the callback is due."""
        return self._when

    def cancel(self) -> None:
        if not self._cancelled and self._scheduled:
            self._loop.timer_cancelled()
        super().cancel()

    # Ordering and equality follow asyncio's TimerHandle: by due time.
    def __lt__(self, other: object) -> bool:
        if isinstance(other, TimerHandle):
            return self._when < other._when
        return NotImplemented

    def __le__(self, other: object) -> bool:
        if isinstance(other, TimerHandle):
            return self._when < other._when or self.__eq__(other)
        return NotImplemented

    def __gt__(self, other: object) -> bool:
        if isinstance(other, TimerHandle):
            return self._when > other._when
        return NotImplemented

    def __ge__(self, other: object) -> bool:
        if isinstance(other, TimerHandle):
            return self._when > other._when or self.__eq__(other)
        return NotImplemented

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TimerHandle):
            return (
                self._when == other._when
                and self._callback == other._callback
                and self._args == other._args
                and self._cancelled == other._cancelled
            )
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._when)

