"""The blocked-loop watchdog: where a loop is stuck, reported while it is stuck.

A thread wakes every quarter of the threshold and asks the loop which callback
is running (``loop.current_callback()``: a sequence number the core bumps as
each callback starts, and its handle).  The same number and a handle at every
look for longer than the threshold means one callback has held the loop all
that time: the thread then takes the loop thread's stack
(:func:`sys._current_frames`) and logs, on the ``slipstream.observe`` logger,
the task, its chain of coroutines and the stack; when the callback returns, one
more line gives the total time.  Times are as seen by the watchdog, so within
a quarter of the threshold.

Off unless asked for (``slipstream.run(..., blocking_ms=N)``,
``SLIPSTREAM_BLOCKING_MS=N``, ``python -m slipstream --blocking-ms N``): then no
thread exists and the loop's turn skips the per-callback bookkeeping.
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import logging
import os
import sys
import threading
import time
import traceback
import types
import weakref
from typing import Any

__all__ = [
    "ENVIRONMENT_VARIABLE",
    "BlockingWatchdog",
    "blocking_ms_from_environment",
    "check_blocking_ms",
    "logger",
]

logger = logging.getLogger("slipstream.observe")

ENVIRONMENT_VARIABLE = "SLIPSTREAM_BLOCKING_MS"

# At most this often, however small the threshold: a sampling thread that
# wakes more often would take the GIL from the loop it watches.
_MIN_INTERVAL = 0.002


def blocking_ms_from_environment() -> float | None:
    """The threshold ``SLIPSTREAM_BLOCKING_MS`` asks for, or None if it is unset or empty."""
    text = os.environ.get(ENVIRONMENT_VARIABLE, "")
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        message = f"{ENVIRONMENT_VARIABLE} must be a number of milliseconds, got {text!r}"
        raise ValueError(message) from None
    return check_blocking_ms(value)


def check_blocking_ms(blocking_ms: float) -> float:
    """``blocking_ms`` as a float if it is a positive number; TypeError or ValueError if not."""
    if isinstance(blocking_ms, bool) or not isinstance(blocking_ms, int | float):
        raise TypeError(f"blocking_ms must be a number, not {type(blocking_ms).__name__}")
    if not blocking_ms > 0:
        raise ValueError(f"blocking_ms must be positive, got {blocking_ms!r}")
    return float(blocking_ms)


class BlockingWatchdog:
    """Watches one loop from a daemon thread; reports callbacks that run longer than a threshold.

    ``start()`` turns on the loop's callback counting and starts the thread;
    ``stop()`` (or closing the loop) ends it.  The loop thread is the one that
    runs the loop's first callback after ``start()``.
    """

    def __init__(self, loop: Any, blocking_ms: float) -> None:
        self.threshold = check_blocking_ms(blocking_ms) / 1000.0
        self.reports = 0
        """How many stalls were reported (for tests and the curious)."""
        self._loop_ref = weakref.ref(loop)
        self._interval = max(_MIN_INTERVAL, self.threshold / 4)
        self._loop_thread: int | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start watching (once)."""
        loop = self._loop_ref()
        if loop is None or self._thread is not None:
            return
        loop.watch_callbacks(True)
        loop.call_soon(self._note_loop_thread)
        self._thread = threading.Thread(
            target=self._watch, name="slipstream-blocking-watchdog", daemon=True
        )
        self._thread.start()
        # A stall that ends the program (the loop closes, the interpreter
        # exits) still gets its closing line: a daemon thread would be frozen
        # before its next look.
        atexit.register(self.stop)

    def stop(self) -> None:
        """Stop watching and wait for the thread to end."""
        atexit.unregister(self.stop)
        self._stopped.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        loop = self._loop_ref()
        if loop is not None and not loop.is_closed():
            loop.watch_callbacks(False)

    def _note_loop_thread(self) -> None:
        self._loop_thread = threading.get_ident()

    def _watch(self) -> None:
        sequence = -1
        since = 0.0
        reported = False
        while True:
            if self._stopped.wait(self._interval):
                if reported:  # stopped (the program is exiting) during a stall
                    self._report_end(time.monotonic() - since)
                return
            loop = self._loop_ref()
            if loop is None or loop.is_closed():
                if reported:  # the stalled callback ended the program's run
                    self._report_end(time.monotonic() - since)
                return
            current, handle = loop.current_callback()
            del loop
            now = time.monotonic()
            if handle is None or current != sequence:
                if reported:
                    self._report_end(now - since)
                sequence, since, reported = current, now, False
                continue
            if not reported and now - since >= self.threshold:
                reported = True
                self.reports += 1
                self._report_stall(handle, now - since)
            del handle

    def _report_stall(self, handle: Any, seconds: float) -> None:
        frame = sys._current_frames().get(self._loop_thread or -1)
        task = _task_of(handle)
        lines = [
            f"Event loop blocked for {seconds:.3f} s (threshold {self.threshold * 1000:g} ms) "
            f"in {_describe(handle, task)}"
        ]
        if task is not None:
            lines.append(f"Task: {task.get_name()!r}")
        if frame is not None:
            chain = _coroutine_chain(frame)
            if chain:
                lines.append("Coroutine chain (outermost first): " + " -> ".join(chain))
            lines.append("Stack of the loop thread (most recent call last):")
            lines.append("".join(traceback.format_stack(frame)).rstrip())
        del frame
        logger.warning("\n".join(lines))

    def _report_end(self, seconds: float) -> None:
        logger.warning("Event loop unblocked after %.3f s", seconds)


def _task_of(handle: Any) -> asyncio.Task[Any] | None:
    owner = getattr(handle._callback, "__self__", None)
    return owner if isinstance(owner, asyncio.Task) else None


def _describe(handle: Any, task: asyncio.Task[Any] | None) -> str:
    try:
        return repr(task) if task is not None else repr(handle)
    except Exception as exc:  # a repr that fails must not end the watchdog
        return f"<unrepresentable {type(handle).__name__}: {exc!r}>"


def _coroutine_chain(frame: types.FrameType | None) -> list[str]:
    """The coroutines on the stack, outermost first, each as ``name() at file:line``."""
    chain = []
    while frame is not None:
        code = frame.f_code
        if code.co_flags & (inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR):
            chain.append(f"{code.co_qualname}() at {code.co_filename}:{frame.f_lineno}")
        frame = frame.f_back
    chain.reverse()
    return chain
