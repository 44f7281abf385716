"""Virtual time: everything built on the loop's clock follows it, at no real cost.

Each test runs on a virtual loop over the epoll and the selectors backend
(``run_virtual`` in conftest.py).  Virtual time is slipstream's own feature,
so these tests have no stock-asyncio twin; what they check is asyncio's
documented semantics at exact virtual instants.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time

import pytest

from slipstream.testing import VirtualClock, new_virtual_loop

from .backoff import RetriesExhausted, retry_with_backoff
from .conftest import RunVirtual


def test_an_hour_of_sleeps_in_1000_tasks_takes_under_a_second(run_virtual: RunVirtual) -> None:
    async def sleeper(finished: list[float]) -> None:
        for _ in range(10):
            await asyncio.sleep(360)
        finished.append(asyncio.get_running_loop().time())

    async def main() -> list[float]:
        # What is timed is virtual time, not asyncio's debug mode (scripts/test.sh also runs
        # the suite with PYTHONASYNCIODEBUG=1, where every one of the 10,000 timers and 1,000
        # tasks would record its creation stack, the same on any loop).
        asyncio.get_running_loop().set_debug(False)
        finished: list[float] = []
        async with asyncio.TaskGroup() as group:
            for _ in range(1000):
                group.create_task(sleeper(finished))
        return finished

    started = time.perf_counter()
    finished = run_virtual(main())
    real = time.perf_counter() - started
    assert finished == [3600.0] * 1000
    assert real < 1.0, f"an hour of virtual sleeps took {real:.3f} s of real time"


def test_wait_for_and_timeout_fire_at_the_exact_virtual_instant(run_virtual: RunVirtual) -> None:
    async def main() -> list[tuple[str, float]]:
        loop = asyncio.get_running_loop()
        seen: list[tuple[str, float]] = []

        async def cancelled_at() -> None:
            try:
                await asyncio.sleep(1e6)
            except asyncio.CancelledError:
                seen.append(("cancelled", loop.time()))
                raise

        with pytest.raises(TimeoutError):
            await asyncio.wait_for(cancelled_at(), timeout=2.5)
        seen.append(("wait_for", loop.time()))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(7.25):
                await asyncio.sleep(60)
        seen.append(("timeout", loop.time()))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout_at(loop.time() + 0.5):
                await asyncio.Event().wait()
        seen.append(("timeout_at", loop.time()))
        # A timeout that does not expire leaves the result alone.
        assert await asyncio.wait_for(asyncio.sleep(3, "slept"), timeout=3.5) == "slept"
        seen.append(("in time", loop.time()))
        return seen

    assert run_virtual(main(), start=100.0) == [
        ("cancelled", 102.5),
        ("wait_for", 102.5),
        ("timeout", 109.75),
        ("timeout_at", 110.25),
        ("in time", 113.25),
    ]


def test_call_later_and_call_at_run_in_deadline_then_scheduling_order(
    run_virtual: RunVirtual,
) -> None:
    async def main() -> list[tuple[str, float]]:
        loop = asyncio.get_running_loop()
        seen: list[tuple[str, float]] = []
        done = loop.create_future()

        def note(name: str) -> None:
            seen.append((name, loop.time()))
            if name == "last":
                done.set_result(None)

        loop.call_at(5.0, note, "at 5")
        loop.call_later(3.0, note, "later 3, first")
        loop.call_later(3.0, note, "later 3, second")
        loop.call_later(2.0, note, "cancelled").cancel()
        loop.call_at(3600.0, note, "last")
        loop.call_soon(note, "soon")
        await done
        return seen

    assert run_virtual(main()) == [
        ("soon", 0.0),
        ("later 3, first", 3.0),
        ("later 3, second", 3.0),
        ("at 5", 5.0),
        ("last", 3600.0),
    ]


def test_task_group_cancels_its_other_tasks_at_the_instant_one_fails(
    run_virtual: RunVirtual,
) -> None:
    async def main() -> list[tuple[str, float]]:
        loop = asyncio.get_running_loop()
        seen: list[tuple[str, float]] = []

        async def fail_after(delay: float) -> None:
            await asyncio.sleep(delay)
            seen.append(("failed", loop.time()))
            raise ValueError("boom")

        async def sleep_long() -> None:
            try:
                await asyncio.sleep(100)
            except asyncio.CancelledError:
                seen.append(("cancelled", loop.time()))
                raise

        with pytest.raises(ExceptionGroup) as caught:
            async with asyncio.TaskGroup() as group:
                group.create_task(sleep_long())
                group.create_task(fail_after(4.0))
        assert caught.group_contains(ValueError)
        seen.append(("group exited", loop.time()))
        return seen

    assert run_virtual(main()) == [("failed", 4.0), ("cancelled", 4.0), ("group exited", 4.0)]


def test_condition_wait_with_a_timeout(run_virtual: RunVirtual) -> None:
    async def main() -> list[tuple[str, float]]:
        loop = asyncio.get_running_loop()
        condition = asyncio.Condition()
        seen: list[tuple[str, float]] = []

        async def notify_at(when: float) -> None:
            await asyncio.sleep(when - loop.time())
            async with condition:
                condition.notify_all()

        async with condition:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(condition.wait(), timeout=10)
        seen.append(("timed out", loop.time()))
        notifier = asyncio.create_task(notify_at(13.0))
        async with condition:
            await asyncio.wait_for(condition.wait(), timeout=10)
        seen.append(("notified", loop.time()))
        await notifier
        return seen

    assert run_virtual(main()) == [("timed out", 10.0), ("notified", 13.0)]


def test_runner_with_new_virtual_loop_as_its_factory() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(42)
        return loop.time(), asyncio.get_running_loop().time()

    with asyncio.Runner(loop_factory=new_virtual_loop) as runner:
        assert runner.run(main()) == (42.0, 42.0)
        # The same loop keeps its clock from one run() to the next.
        assert runner.run(main()) == (84.0, 84.0)


def test_retry_with_backoff_spends_minutes_of_virtual_time_in_milliseconds(
    run_virtual: RunVirtual,
) -> None:
    async def main() -> tuple[str, list[float]]:
        loop = asyncio.get_running_loop()
        attempts: list[float] = []

        async def flaky() -> str:
            attempts.append(loop.time())
            if len(attempts) <= 10:
                raise ConnectionRefusedError("not yet")
            return "connected"

        result = await retry_with_backoff(
            flaky, retries=10, base_delay=1.0, max_delay=120.0, deadline=600.0,
            rng=random.Random(7),
        )
        return result, attempts

    started = time.perf_counter()
    result, attempts = run_virtual(main())
    real = time.perf_counter() - started
    assert result == "connected"
    # The attempts happened exactly where the seeded delays put them.
    rng = random.Random(7)
    expected = [0.0]
    for attempt in range(10):
        delay = min(120.0, 2.0**attempt)
        expected.append(expected[-1] + rng.uniform(delay / 2, delay))
    assert attempts == expected
    assert 300.0 < attempts[-1] < 600.0  # minutes of backoff...
    assert real < 0.5, f"took {real:.3f} s of real time"  # ...in milliseconds


def test_retry_with_backoff_gives_up_at_its_deadline(run_virtual: RunVirtual) -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()

        async def down() -> None:
            raise ConnectionResetError("down")

        with pytest.raises(TimeoutError):
            await retry_with_backoff(
                down, retries=50, base_delay=1.0, max_delay=120.0, deadline=600.0,
                rng=random.Random(1),
            )
        with pytest.raises(RetriesExhausted):
            await retry_with_backoff(
                down, retries=3, base_delay=1.0, max_delay=120.0, deadline=600.0,
                rng=random.Random(1),
            )
        return loop.time()

    finished = run_virtual(main())
    # The deadline cut the first call at 600 s; the second slept three delays of at most 1+2+4.
    assert 600.0 + 3.5 <= finished <= 600.0 + 7.0


def _seeded_program(seed: int) -> list[tuple[float, str]]:
    """Workers, a queue and timers whose timing comes from a seeded generator."""
    rng = random.Random(seed)

    async def main() -> list[tuple[float, str]]:
        loop = asyncio.get_running_loop()
        events: list[tuple[float, str]] = []
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=3)

        async def producer(name: str) -> None:
            for step in range(5):
                await asyncio.sleep(rng.choice([0.0, 0.5, 1.0, rng.uniform(0, 3)]))
                await queue.put(f"{name}.{step}")
                events.append((loop.time(), f"put {name}.{step}"))

        async def consumer(name: str) -> None:
            while True:
                item = await queue.get()
                events.append((loop.time(), f"{name} got {item}"))
                await asyncio.sleep(rng.uniform(0, 2))
                queue.task_done()

        for index in range(8):
            loop.call_later(rng.uniform(0, 10), events.append, (-1.0, f"timer {index}"))
        consumers = [asyncio.create_task(consumer(f"c{index}")) for index in range(3)]
        async with asyncio.TaskGroup() as group:
            for index in range(6):
                group.create_task(producer(f"p{index}"))
        await queue.join()
        for task in consumers:
            task.cancel()
        await asyncio.sleep(10)  # let every timer fire
        return events

    with asyncio.Runner(loop_factory=new_virtual_loop) as runner:
        return runner.run(main())


def test_a_seeded_program_gives_the_same_event_order_every_run() -> None:
    first = _seeded_program(seed=2026)
    second = _seeded_program(seed=2026)
    assert len(first) == 6 * 5 * 2 + 8
    assert first == second
    # The order is the program's, not a constant: another seed gives another one.
    assert _seeded_program(seed=2027) != first


def test_a_clock_moved_by_hand_when_autojump_is_off(run_virtual: RunVirtual) -> None:
    async def main() -> list[tuple[str, float]]:
        loop = asyncio.get_running_loop()
        clock = loop.clock  # type: ignore[attr-defined]
        seen: list[tuple[str, float]] = []

        async def sleeper() -> None:
            await asyncio.sleep(10)
            seen.append(("woke", loop.time()))

        task = asyncio.create_task(sleeper())
        await asyncio.sleep(0)
        clock.advance(4)
        for _ in range(3):
            await asyncio.sleep(0)
        seen.append(("after 4", loop.time()))
        assert not task.done()
        clock.advance(6.5)
        await task
        return seen

    assert run_virtual(main(), autojump=False) == [("after 4", 4.0), ("woke", 10.5)]


def test_advance_from_another_thread_wakes_a_waiting_loop(run_virtual: RunVirtual) -> None:
    clock = VirtualClock(autojump=False)
    mover = threading.Timer(0.05, clock.advance, (30.0,))

    async def main() -> float:
        mover.start()
        # Nothing else can end this sleep: the loop waits in its real poll
        # until the other thread's advance() wakes it.
        await asyncio.sleep(30)
        return asyncio.get_running_loop().time()

    assert run_virtual(main(), clock=clock) == 30.0
    mover.join()


def test_wait_idle_lets_everything_due_run_before_the_clock_moves(
    run_virtual: RunVirtual,
) -> None:
    async def main() -> list[list[tuple[str, float]]]:
        loop = asyncio.get_running_loop()
        clock: VirtualClock = loop.clock  # type: ignore[attr-defined]
        seen: list[tuple[str, float]] = []
        snapshots: list[list[tuple[str, float]]] = []

        async def chain(name: str, delay: float) -> None:
            # Several hops of tasks and futures between two sleeps: more than
            # a sleep(0) or two would let through.
            for _ in range(3):
                await asyncio.sleep(delay)
                inner = asyncio.create_task(asyncio.sleep(0, name))
                seen.append((await asyncio.shield(inner), loop.time()))

        tasks = [asyncio.create_task(chain("a", 1.0)), asyncio.create_task(chain("b", 2.0))]
        await clock.wait_idle()
        snapshots.append(list(seen))
        clock.advance(2.0)
        await clock.wait_idle()
        snapshots.append(list(seen))
        clock.advance(2.0)
        await clock.wait_idle()
        snapshots.append(list(seen))
        for task in tasks:
            task.cancel()
        return snapshots

    # With autojump off, nothing moves the clock but advance(); each
    # wait_idle() returns when every task has reached its next sleep.
    assert run_virtual(main(), autojump=False) == [
        [],
        [("a", 2.0), ("b", 2.0)],
        [("a", 2.0), ("b", 2.0), ("a", 4.0), ("b", 4.0)],
    ]


def test_wait_idle_with_autojump_returns_before_the_jump(run_virtual: RunVirtual) -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        clock: VirtualClock = loop.clock  # type: ignore[attr-defined]
        sleeper = asyncio.create_task(asyncio.sleep(50))
        await clock.wait_idle()
        idle_at = loop.time()
        await sleeper
        return idle_at, loop.time()

    assert run_virtual(main()) == (0.0, 50.0)


def test_wait_idle_on_another_loop_is_refused() -> None:
    clock = VirtualClock()

    async def main() -> None:
        await clock.wait_idle()

    with pytest.raises(RuntimeError, match="does not drive the running loop"):
        asyncio.run(main())
