"""The readiness backend of a virtual loop: real I/O, virtual waiting.

The loop core asks its backend to wait: ``poll_ready(timeout, ...)`` (or
``poll(timeout)``; both wait alike, as in the table), where the timeout is
what is left until the next timer, in loop time.  On a virtual loop that
is virtual time, which no real wait can measure.  So this wrapper turns each
wait into a real *peek* and, when the peek finds nothing, moves the clock
instead of waiting:

==========================  ================================================
the loop asks               this backend
==========================  ================================================
``poll(0)`` (work ready)    peeks at real I/O, as any loop does
any other, while a task is  wakes those tasks (the loop is idle: nothing is
in ``clock.wait_idle()``    ready) and peeks, without waiting or jumping
``poll(None)`` (no timer)   waits for real I/O for as long as it takes
``poll(t)``, autojump on    peeks for ``autojump_threshold`` real seconds;
                            nothing came: the clock jumps ``t`` ahead, so
                            the next timer is due when the poll returns
``poll(t)``, autojump off   waits for real I/O or a wake-up (``advance()``
                            from another thread wakes it)
``poll(t)`` during real     waits for real I/O or a wake-up: while a thread
work (an executor job)      of the loop works, virtual time stands still
==========================  ================================================

The real descriptors, the interest masks and the wake-up pipe all stay with
the real backend: real sockets, pipes, subprocesses and signals behave as on
any slipstream loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ..backends import PollingBackend, ReadyBackend, complete_backend
from .clock import VirtualClock

T = TypeVar("T")


class VirtualTimeBackend(ReadyBackend):
    """A real :class:`~slipstream.backends.IOBackend` whose waits are virtual time."""

    def __init__(
        self,
        real: PollingBackend,
        clock: VirtualClock,
        real_work_pending: Callable[[], bool],
    ) -> None:
        self._real = complete_backend(real)
        self._clock = clock
        self._real_work_pending = real_work_pending
        self.name = f"virtual:{real.name}"

    def set_interest(self, fd: int, events: int) -> None:
        self._real.set_interest(fd, events)

    def watch_edges(self, fd: int, events: int, owner: object) -> None:
        self._real.watch_edges(fd, events, owner)

    def fileno(self) -> int:
        return self._real.fileno()

    def close(self) -> None:
        self._real.close()

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        real_timeout, jump = self._plan(timeout)
        events = self._real.poll(real_timeout)
        if jump is not None and not events:
            self._clock.jump(jump)
        return events

    def poll_ready(
        self,
        timeout: float | None,
        readers: dict[int, T],
        writers: dict[int, T],
        ready: list[T],
    ) -> int:
        real_timeout, jump = self._plan(timeout)
        count = self._real.poll_ready(real_timeout, readers, writers, ready)
        if jump is not None and not count:
            self._clock.jump(jump)
        return count

    def _plan(self, timeout: float | None) -> tuple[float | None, float | None]:
        """How long to wait for real, and how far to jump the clock if nothing came."""
        if timeout == 0.0:
            return 0.0, None
        clock = self._clock
        if clock.notify_idle():
            # wait_idle() callers are ready to run now: peek, do not wait.
            return 0.0, None
        if timeout is None or not clock.autojump or self._real_work_pending():
            # Nothing to jump to, jumping is off, or a thread's result is on
            # its way: only real I/O or a wake-up can end this wait.
            return None, None
        return clock.autojump_threshold, timeout
