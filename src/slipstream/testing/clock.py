"""The virtual clock: loop time that moves only when told to, or when the loop is idle."""

from __future__ import annotations

import asyncio
import math
from typing import Any


class VirtualClock:
    """The time of a virtual loop (:func:`slipstream.testing.new_virtual_loop`).

    The clock starts at ``start`` and never moves by itself while callbacks
    run.  It moves in two ways only:

    * **autojump** (on by default): when the loop has nothing ready and no
      I/O arrived within ``autojump_threshold`` seconds of *real* time, the
      clock jumps straight to the loop's next timer, so a test that sleeps an
      hour takes no real time at all;
    * **advance(seconds)**, by hand, from the loop or from another thread.

    ``autojump`` and ``autojump_threshold`` may be changed at any time, also
    while the loop runs; the next idle turn uses the new values.
    """

    def __init__(
        self,
        start: float = 0.0,
        *,
        autojump: bool = True,
        autojump_threshold: float = 0.0,
    ) -> None:
        self._now = _finite(start, "start")
        self.autojump = autojump
        self.autojump_threshold = autojump_threshold
        self._jumps = 0
        self._jumped = 0.0
        self._advanced = 0.0
        # The loop this clock drives (advance() wakes it), and the futures of
        # wait_idle() calls, resolved by the loop's next idle poll.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle_waiters: list[asyncio.Future[None]] = []

    def __repr__(self) -> str:
        return (
            f"<VirtualClock time={self._now!r} autojump={self.autojump} "
            f"autojump_threshold={self._autojump_threshold!r}>"
        )

    @property
    def autojump_threshold(self) -> float:
        """Real seconds the loop waits for I/O before jumping to its next timer."""
        return self._autojump_threshold

    @autojump_threshold.setter
    def autojump_threshold(self, seconds: float) -> None:
        seconds = _finite(seconds, "autojump_threshold")
        if seconds < 0:
            raise ValueError(f"autojump_threshold must be >= 0, got {seconds!r}")
        self._autojump_threshold = seconds

    def time(self) -> float:
        """The current virtual time, in seconds (what ``loop.time()`` returns)."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (>= 0) and wake the loop to look at its timers.

        Safe to call from the loop (the timers that are now due run in its
        next turn) and from another thread (the loop's poll is woken, as
        ``call_soon_threadsafe`` wakes it).
        """
        seconds = _finite(seconds, "seconds")
        if seconds < 0:
            raise ValueError(f"time can only move forward, got advance({seconds!r})")
        self._now += seconds
        self._advanced += seconds
        loop = self._loop
        if loop is not None and not loop.is_closed():
            # The turn is the point: a loop waiting in its poll looks at its
            # timers again.
            loop.call_soon_threadsafe(_nothing)

    async def wait_idle(self) -> None:
        """Return once the loop has nothing else to do, before the clock moves again.

        "Nothing else to do": every other task and callback is waiting, for
        a timer, for I/O or for each other.  With autojump off, a test
        calls it after ``advance()`` to let everything that is now due run
        to its next wait (trio's ``wait_all_tasks_blocked``); with autojump
        on, it returns before the jump.
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            raise RuntimeError(f"{self!r} does not drive the running loop")
        waiter: asyncio.Future[None] = loop.create_future()
        self._idle_waiters.append(waiter)
        await waiter

    def statistics(self) -> dict[str, float]:
        """How the clock got here: ``time``, ``jumps``, seconds ``jumped`` and ``advanced``."""
        return {
            "time": self._now,
            "jumps": self._jumps,
            "jumped": self._jumped,
            "advanced": self._advanced,
        }

    # -- used by the loop that owns this clock (slipstream.testing.loop) ------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Become the clock of ``loop``; a clock drives one loop at a time."""
        if self._loop is not None:
            raise RuntimeError(f"{self!r} already drives a loop")
        self._loop = loop

    def detach(self) -> None:
        """Forget the loop (it closed); the clock keeps its time and can drive another."""
        self._loop = None
        self._idle_waiters.clear()

    def notify_idle(self) -> bool:
        """The loop is idle: wake the :meth:`wait_idle` callers; False if there were none."""
        if not self._idle_waiters:
            return False
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        return True

    def jump(self, seconds: float) -> None:
        """An autojump: move ``seconds`` forward because the loop was idle."""
        self._now += seconds
        self._jumps += 1
        self._jumped += seconds


def _nothing(*_: Any) -> None:
    """The callback that wakes a loop after ``advance()``."""


def _finite(value: float, name: str) -> float:
    # What is not a number is a TypeError, as in asyncio's own clock
    # arithmetic; NaN and the infinities are numbers that make no time.
    if not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number
