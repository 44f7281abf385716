"""Signal handlers: ``add_signal_handler`` / ``remove_signal_handler``.

How a signal reaches a callback
-------------------------------
A Python-level signal handler runs only when the main thread gets back to the
interpreter's eval loop, which may be a long time if it is blocked in
``epoll_wait``.  So, like asyncio, we do not rely on it: we install a do-nothing
Python handler (so that the C-level handler is armed) and point
:func:`signal.set_wakeup_fd` at the write end of a non-blocking pipe.  The
C handler then writes the signal number as one byte into that pipe *from the
signal handler itself*; the loop watches the read end, so a blocked poll
returns at once, and the bytes say which signals arrived.

Storms and coalescing
---------------------
The kernel keeps at most one pending instance of each standard signal, so two
``kill()`` calls may be delivered as one; nothing above the kernel can undo
that.  What we must not do is lose a *delivery*.  CPython writes one byte per
delivery, and we drain the descriptor completely on each wake-up and schedule
the handler once per byte, as asyncio does.

The one place a delivery can still be lost is a full wake-up buffer: CPython
then drops the byte (and prints "Exception ignored when trying to write to the
signal wakeup fd").  asyncio uses a socketpair, where every one-byte write
costs a whole socket buffer entry (about 770 bytes of the ~200 KiB send buffer), so
a burst of about 280 signals between two turns of its loop already overflows
it.  We use a pipe instead: the kernel packs small writes into its pages, so it
holds 64 KiB of signal numbers, and a burst of thousands of signals is counted
exactly.  A full buffer still wakes the loop, so no wake-up is ever lost.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import os
import signal
import sys
import warnings
from collections.abc import Callable
from typing import Any, TypeVarTuple

from ..core import CoreLoop
from ..core.errors import logger

_Ts = TypeVarTuple("_Ts")

# Read this much per read() when draining the wake-up pipe.
_DRAIN_SIZE = 4096


def _ignore_signal(signum: int, frame: object) -> None:
    """The Python-level handler: the real work is the byte the C handler writes."""


class _SignalCallback:
    """What runs when a signal arrives: a callback, its arguments and its context."""

    __slots__ = ("args", "callback", "context")

    def __init__(self, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self.callback = callback
        self.args = args
        # Like asyncio's Handle, the callback runs in the context that was
        # current when the handler was added, not the one of whatever ran last.
        self.context = contextvars.copy_context()


def _check_signal(sig: object) -> int:
    if not isinstance(sig, int):
        raise TypeError(f"sig must be an int, not {sig!r}")
    if sig not in signal.valid_signals():
        raise ValueError(f"invalid signal number {sig}")
    return sig


class SignalHandling(CoreLoop):
    """``add_signal_handler`` / ``remove_signal_handler``.

    The wake-up pipe is made on first use, so a loop that never handles
    signals costs nothing here.
    """

    _signal_callbacks: dict[int, _SignalCallback] | None = None
    # The wake-up pipe (read end, write end), made on first use.
    _signal_pipe: tuple[int, int] | None = None

    def add_signal_handler(self, sig: int, callback: Callable[[*_Ts], object], *args: *_Ts) -> None:
        """Run ``callback(*args)`` in the loop whenever signal ``sig`` is delivered.

        Only the main thread can handle signals: from another thread this
        raises RuntimeError, as asyncio does.
        """
        if asyncio.iscoroutine(callback) or asyncio.iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        sig = _check_signal(sig)
        if self.is_closed():
            raise RuntimeError("Event loop is closed")
        write_fd = self._signal_wakeup_fd()
        try:
            # Raises ValueError outside the main thread: checked first, so a
            # loop running in another thread cannot steal the process's signals.
            signal.set_wakeup_fd(write_fd)
        except (ValueError, OSError) as exc:
            raise RuntimeError(str(exc)) from None

        callbacks = self._signal_callbacks
        if callbacks is None:
            callbacks = self._signal_callbacks = {}
        callbacks[sig] = _SignalCallback(callback, args)
        try:
            signal.signal(sig, _ignore_signal)
            # SA_RESTART: system calls interrupted by this signal are restarted
            # by the kernel instead of failing with EINTR.
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del callbacks[sig]
            if not callbacks:
                self._clear_wakeup_fd()
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught") from None
            raise

    def remove_signal_handler(self, sig: int) -> bool:
        """Remove the handler for ``sig``; True if there was one.

        The signal's disposition goes back to the default (for SIGINT, the one
        that raises KeyboardInterrupt).
        """
        sig = _check_signal(sig)
        callbacks = self._signal_callbacks
        if not callbacks or callbacks.pop(sig, None) is None:
            return False
        handler = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, handler)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught") from None
            raise
        if not callbacks:
            self._clear_wakeup_fd()
        return True

    def close(self) -> None:
        """Close the loop, then remove every signal handler it installed."""
        super().close()
        callbacks = self._signal_callbacks
        if callbacks:
            if not sys.is_finalizing():
                for sig in list(callbacks):
                    self.remove_signal_handler(sig)
            else:
                # At interpreter shutdown the signal module may already be
                # half torn down; asyncio warns and leaves dispositions alone.
                warnings.warn(
                    f"Closing the loop {self!r} on interpreter shutdown stage, "
                    "skipping signal handlers removal",
                    ResourceWarning,
                    stacklevel=2,
                    source=self,
                )
                callbacks.clear()
        fds = self._signal_pipe
        if fds is not None:
            self._signal_pipe = None
            for fd in fds:
                os.close(fd)

    # -- internals -----------------------------------------------------------------

    def _signal_wakeup_fd(self) -> int:
        fds = self._signal_pipe
        if fds is None:
            read_fd, write_fd = os.pipe()  # close-on-exec, as os.pipe() always is
            # Non-blocking at both ends: the C signal handler must never block
            # on a full pipe, and the loop must never block draining it.
            os.set_blocking(read_fd, False)
            os.set_blocking(write_fd, False)
            try:
                self.watch_readable(read_fd, self._read_signals, read_fd)
            except BaseException:
                os.close(read_fd)
                os.close(write_fd)
                raise
            fds = self._signal_pipe = (read_fd, write_fd)
        return fds[1]

    def _clear_wakeup_fd(self) -> None:
        try:
            signal.set_wakeup_fd(-1)
        except (ValueError, OSError) as exc:
            logger.info("set_wakeup_fd(-1) failed: %s", exc)

    def _read_signals(self, read_fd: int) -> None:
        # Drain everything that is there: the C handler wrote one byte per
        # delivery, and each byte is one call of the handler.
        while True:
            try:
                data = os.read(read_fd, _DRAIN_SIZE)
            except InterruptedError:
                continue
            except OSError:  # BlockingIOError: drained
                return
            for signum in data:
                self._dispatch_signal(signum)
            if len(data) < _DRAIN_SIZE:
                return

    def _dispatch_signal(self, signum: int) -> None:
        callbacks = self._signal_callbacks
        if not callbacks:
            return
        entry = callbacks.get(signum)
        if entry is not None:
            self.call_soon(entry.callback, *entry.args, context=entry.context)
