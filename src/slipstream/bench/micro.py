"""Scheduling micro-benchmarks, run inside a child on the loop under test.

Each benchmark performs ``n`` operations and returns the elapsed wall time; the
result is reported in nanoseconds per operation.  They measure what a loop's
core costs per callback, timer or task switch, with as little else as possible
in the measured window: no I/O, no allocation beyond what the operation needs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class MicroBenchmark:
    """One micro-benchmark: its row name, label and operation count per run."""

    name: str
    label: str
    operations: int
    run: Callable[[int], Awaitable[float]]


async def call_soon_chain(n: int) -> float:
    """A callback that schedules itself with ``call_soon``, ``n`` times in a row."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    remaining = n

    def step() -> None:
        nonlocal remaining
        remaining -= 1
        if remaining:
            loop.call_soon(step)
        else:
            done.set_result(None)

    started = time.perf_counter()
    loop.call_soon(step)
    await done
    return time.perf_counter() - started


async def call_later_fire(n: int) -> float:
    """A callback that re-arms itself with ``call_later(0)``: timer scheduled, due and fired."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    remaining = n

    def step() -> None:
        nonlocal remaining
        remaining -= 1
        if remaining:
            loop.call_later(0, step)
        else:
            done.set_result(None)

    started = time.perf_counter()
    loop.call_later(0, step)
    await done
    return time.perf_counter() - started


def _never() -> None:
    raise AssertionError("a cancelled timer fired")


async def call_later_cancel(n: int) -> float:
    """``call_later(10, cb)`` then ``cancel()``, ``n`` times, plus the loop turns that drop them.

    Loops remove cancelled timers lazily, so the measured window ends only after
    a few loop iterations have had the chance to purge the heap.
    """
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    for _ in range(n):
        loop.call_later(10.0, _never).cancel()
    for _ in range(3):
        await asyncio.sleep(0)
    return time.perf_counter() - started


async def _sleep_zero_times(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def sleep_zero_ping_pong(n: int) -> float:
    """Two tasks taking turns through ``await asyncio.sleep(0)``; ``n`` switches in all."""
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    first = loop.create_task(_sleep_zero_times(n // 2))
    second = loop.create_task(_sleep_zero_times(n - n // 2))
    await first
    await second
    return time.perf_counter() - started


async def _nothing() -> None:
    return None


async def create_task_gather(n: int) -> float:
    """Batches of 100 trivial tasks created with ``create_task`` and awaited with ``gather``."""
    loop = asyncio.get_running_loop()
    batch = 100
    started = time.perf_counter()
    for _ in range(max(1, n // batch)):
        await asyncio.gather(*[loop.create_task(_nothing()) for _ in range(batch)])
    return time.perf_counter() - started


async def event_ping_pong(n: int) -> float:
    """Two tasks handing control back and forth through two Events; ``n`` round trips."""
    ping, pong = asyncio.Event(), asyncio.Event()

    async def responder() -> None:
        for _ in range(n):
            await ping.wait()
            ping.clear()
            pong.set()

    task = asyncio.get_running_loop().create_task(responder())
    started = time.perf_counter()
    for _ in range(n):
        ping.set()
        await pong.wait()
        pong.clear()
    await task
    return time.perf_counter() - started


# Operation counts take ~0.2–0.5 s on stock asyncio on a 2-vCPU VM; --quick divides them.
BENCHMARKS = (
    MicroBenchmark("call_soon_chain", "call_soon chain", 200_000, call_soon_chain),
    MicroBenchmark("call_later_fire", "call_later fire", 100_000, call_later_fire),
    MicroBenchmark("call_later_cancel", "call_later+cancel", 200_000, call_later_cancel),
    MicroBenchmark("sleep0_ping_pong", "sleep(0) ping-pong", 200_000, sleep_zero_ping_pong),
    MicroBenchmark("create_task_gather", "create_task+gather", 50_000, create_task_gather),
    MicroBenchmark("event_ping_pong", "Event ping-pong", 50_000, event_ping_pong),
)
BY_NAME = {bench.name: bench for bench in BENCHMARKS}


async def run_micro(names: list[str], scale: float) -> dict[str, float]:
    """Run the named micro-benchmarks in order; ns per operation for each.

    A warm-up pass of a tenth of the operations comes first, so that the
    measured pass does not pay for first-call specialisation or heap growth.
    """
    results: dict[str, float] = {}
    for name in names:
        bench = BY_NAME[name]
        warmup, measured = passes(bench, scale)
        await bench.run(warmup)
        elapsed = await bench.run(measured)
        results[name] = elapsed / performed(bench, measured) * 1e9
    return results


def passes(bench: MicroBenchmark, scale: float) -> tuple[int, int]:
    """The operation counts ``run_micro`` asks of its warm-up and measured passes."""
    operations = max(100, int(bench.operations * scale))
    return max(100, operations // 10), operations


def performed(bench: MicroBenchmark, operations: int) -> int:
    """How many operations ``bench.run(operations)`` actually performs."""
    if bench.name == "create_task_gather":
        return max(1, operations // 100) * 100  # whole batches of 100 tasks
    return operations


def operations_in_run(bench: MicroBenchmark, scale: float) -> int:
    """Operations performed by ``run_micro([bench.name], scale)``, warm-up included."""
    return sum(performed(bench, count) for count in passes(bench, scale))
