"""What the scenarios share: the two scales, resource measurements, running on a loop."""

from __future__ import annotations

import asyncio
import os
import resource
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
LoopFactory = Callable[[], asyncio.AbstractEventLoop]
Figures = dict[str, Any]


@dataclass(frozen=True)
class Scale:
    """How big each scenario runs.  ``SHORT`` fits CI; ``FULL`` is the documented run."""

    name: str
    soak_tcp_connections: int
    soak_unix_connections: int
    soak_messages: int  # in all, over every connection and round
    soak_rounds: int
    soak_max_message: int
    backpressure_bytes: int
    storm_connections: int
    signals: int
    children: int
    threadsafe_callbacks: int  # in all, over the 8 threads
    fuzz_seeds: int


SHORT = Scale(
    name="short",
    soak_tcp_connections=40,
    soak_unix_connections=10,
    soak_messages=1_500,
    soak_rounds=2,
    soak_max_message=256 * 1024,
    backpressure_bytes=16 * 1024 * 1024,
    storm_connections=50,
    signals=1_000,
    children=30,
    threadsafe_callbacks=40_000,
    fuzz_seeds=200,
)

FULL = Scale(
    name="full",
    soak_tcp_connections=1_000,
    soak_unix_connections=100,
    soak_messages=1_000_000,
    soak_rounds=10,
    soak_max_message=256 * 1024,
    backpressure_bytes=1024 * 1024 * 1024,
    storm_connections=1_000,
    signals=10_000,
    children=1_000,
    threadsafe_callbacks=1_000_000,
    fuzz_seeds=20_000,
)


def open_fds() -> int:
    """How many descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    """This process's resident set size now (not its peak)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def raise_fd_limit(wanted: int) -> None:
    """Raise the soft descriptor limit towards ``wanted`` (never above the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def run_on(loop_factory: LoopFactory, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a fresh loop made by ``loop_factory``."""
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(coro)


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` on the running loop; fail with ``what`` after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)
