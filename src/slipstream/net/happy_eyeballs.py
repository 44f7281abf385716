"""Happy Eyeballs (RFC 8305) connection planning, without sockets or clocks.

``create_connection(happy_eyeballs_delay=...)`` races connection attempts to
the addresses a name resolved to: the first attempt starts at once, and each
next one starts when the attempt before it fails, or when ``delay`` seconds
have passed since it started, whichever comes first.  The first attempt to
succeed wins and every other one still running is cancelled.  (That is the
contract of asyncio's ``staggered_race``.)

:class:`ConnectPlanner` is that policy as a state machine: it is told what
happened (an attempt failed or succeeded, the clock reached its deadline) and
answers with what to do (which attempts to start or cancel).  It never touches
a socket, a task or a clock, so it is tested on its own with plain numbers, and
the code that does the I/O (:mod:`slipstream.net.streams`) stays a thin driver.
:func:`interleave_by_family` is the address ordering that goes with it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

__all__ = ["ConnectPlanner", "interleave_by_family"]

_T = TypeVar("_T")


def interleave_by_family(
    addresses: Sequence[_T],
    first_family_count: int = 1,
    family: Callable[[_T], Hashable] = lambda info: info[0],  # type: ignore[index]
) -> list[_T]:
    """Reorder ``addresses`` so that address families alternate (RFC 8305 §4).

    Families keep the order of their first appearance and each family keeps
    its own order; the first family leads with ``first_family_count``
    addresses before the alternation starts.  ``family`` extracts the family
    (by default item 0, as in a ``getaddrinfo`` tuple).
    """
    by_family: dict[Hashable, list[_T]] = {}
    for address in addresses:
        by_family.setdefault(family(address), []).append(address)
    groups = list(by_family.values())
    if not groups:
        return []
    lead = max(first_family_count - 1, 0)
    reordered = groups[0][:lead]
    groups[0] = groups[0][lead:]
    for round_ in itertools.zip_longest(*groups):
        reordered.extend(address for address in round_ if address is not None)
    return reordered


class ConnectPlanner:
    """Which connection attempts to start and cancel, and when.

    Attempts are numbered ``0 .. count-1`` in the order to try them.  The
    driver calls :meth:`begin` once, then reports each attempt's outcome
    (:meth:`attempt_failed`, :meth:`attempt_succeeded`) and, when the clock
    reaches :attr:`deadline`, calls :meth:`timer_expired`.  Each call returns
    the attempts to start now.  It is over when :attr:`done` is true: then
    :attr:`winner` is the winning attempt, or ``None`` if every attempt failed.

    ``delay=None`` gives plain sequential attempts: the next starts only when
    the previous one has failed.
    """

    def __init__(self, count: int, delay: float | None) -> None:
        if delay is not None and delay < 0:
            raise ValueError(f"delay must be >= 0 or None, got {delay!r}")
        self._count = count
        self._delay = delay
        self._started = 0  # attempts 0 .. _started-1 have been started
        self._running: set[int] = set()
        self._latest_started_at = 0.0
        self.winner: int | None = None

    @property
    def running(self) -> frozenset[int]:
        """The attempts started and not yet finished."""
        return frozenset(self._running)

    @property
    def started(self) -> int:
        """How many attempts have been started so far."""
        return self._started

    @property
    def done(self) -> bool:
        """True once there is a winner, or nothing is running and nothing is left to try."""
        if self.winner is not None:
            return True
        return not self._running and self._started >= self._count

    @property
    def deadline(self) -> float | None:
        """When the next attempt starts even if the current ones are still pending."""
        if self._delay is None or self.winner is not None or self._started >= self._count:
            return None
        if not self._running:
            return None  # nothing pending: the next start is driven by events only
        return self._latest_started_at + self._delay

    def begin(self, now: float) -> list[int]:
        """Start the race: the first attempt (none if there is nothing to try)."""
        if self._started:
            raise RuntimeError("begin() was already called")
        return self._start_next(now)

    def attempt_failed(self, index: int, now: float) -> list[int]:
        """Attempt ``index`` failed; returns the attempts to start now."""
        self._finish(index)
        if self.winner is not None:
            return []
        # The failure of the most recent attempt triggers the next one; an
        # older attempt failing does not (the newest is still within its delay).
        if index == self._started - 1:
            return self._start_next(now)
        return []

    def attempt_succeeded(self, index: int) -> list[int] | None:
        """Attempt ``index`` connected.

        Returns the attempts to cancel if it won, or ``None`` if another
        attempt already won (the caller must then discard this one's result).
        """
        self._finish(index)
        if self.winner is not None:
            return None
        self.winner = index
        losers = sorted(self._running)
        self._running.clear()
        return losers

    def attempt_cancelled(self, index: int) -> None:
        """An attempt ended because it was cancelled (no new attempt results)."""
        self._running.discard(index)

    def timer_expired(self, now: float) -> list[int]:
        """The clock reached :attr:`deadline` (or later); returns the attempts to start."""
        deadline = self.deadline
        if deadline is None or now < deadline:
            return []
        return self._start_next(now)

    def _finish(self, index: int) -> None:
        if not 0 <= index < self._started:
            raise ValueError(f"attempt {index} was never started")
        self._running.discard(index)

    def _start_next(self, now: float) -> list[int]:
        if self._started >= self._count:
            return []
        index = self._started
        self._started += 1
        self._running.add(index)
        self._latest_started_at = now
        return [index]
