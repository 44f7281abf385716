"""The virtual loop: slipstream's loop with a :class:`VirtualClock` for its time."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any, TypeVar, TypeVarTuple

from ..backends import PollingBackend, create_backend
from ..event_loop import EventLoop
from .backend import VirtualTimeBackend
from .clock import VirtualClock

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")


class VirtualEventLoop(EventLoop):
    """A complete slipstream loop whose ``time()`` is ``clock.time()``.

    Everything scheduled by time (``call_later``, ``call_at``,
    ``asyncio.sleep``, ``wait_for``, ``asyncio.timeout``...) follows the
    virtual clock; I/O stays real.  Where the two meet:

    * While a job submitted with ``run_in_executor`` (``asyncio.to_thread``,
      name resolution, the default executor's shutdown) is running, the clock
      does not jump: the loop waits, in real time, for the thread's result or
      for real I/O, as if the thread's work took no virtual time.
    * Real I/O (a socket or pipe becoming readable, a child process exiting)
      is seen whenever the loop polls.  An idle loop waits
      ``clock.autojump_threshold`` real seconds for it before jumping to its
      next timer; with the default of 0, a virtual timeout pending beside a
      real read fires at once unless the data is already there.
    * ``call_soon_threadsafe`` from any thread wakes the loop at the current
      virtual time.
    """

    def __init__(self, clock: VirtualClock, backend: PollingBackend | None = None) -> None:
        self.clock = clock
        self._executor_jobs = 0
        real = backend if backend is not None else create_backend()
        super().__init__(VirtualTimeBackend(real, clock, self._has_executor_jobs))
        try:
            clock.attach(self)
        except BaseException:
            # The clock drives another loop: release this one's descriptors.
            super().close()
            raise

    def time(self) -> float:
        return self.clock.time()

    def close(self) -> None:
        super().close()
        self.clock.detach()

    def run_in_executor(
        self,
        executor: concurrent.futures.Executor | None,
        func: Callable[[*_Ts], _T],
        *args: *_Ts,
    ) -> asyncio.Future[_T]:
        future = super().run_in_executor(executor, func, *args)
        self._executor_jobs += 1
        future.add_done_callback(self._executor_job_done)
        return future

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        # Joining the threads is real work too: its timeout must not expire
        # by a jump while they finish.
        self._executor_jobs += 1
        try:
            await super().shutdown_default_executor(timeout)
        finally:
            self._executor_jobs -= 1

    def _has_executor_jobs(self) -> bool:
        return self._executor_jobs > 0

    def _executor_job_done(self, future: asyncio.Future[Any]) -> None:
        self._executor_jobs -= 1


def new_virtual_loop(
    autojump: bool = True,
    start: float = 0.0,
    *,
    autojump_threshold: float = 0.0,
    clock: VirtualClock | None = None,
    backend: PollingBackend | None = None,
) -> VirtualEventLoop:
    """A new slipstream loop on virtual time; its clock is ``loop.clock``.

    ``autojump``, ``start`` and ``autojump_threshold`` make its
    :class:`VirtualClock`; pass ``clock`` instead to use one made beforehand
    (a clock drives one open loop at a time).  ``backend`` is the real
    readiness backend (the default one if omitted).  Use it wherever a loop
    factory goes: ``asyncio.Runner(loop_factory=new_virtual_loop)``.
    """
    if clock is None:
        clock = VirtualClock(start, autojump=autojump, autojump_threshold=autojump_threshold)
    return VirtualEventLoop(clock, backend)
