"""VirtualClock on its own, and the loop's ownership of it: arguments, errors, statistics."""

from __future__ import annotations

import asyncio
import math

import pytest

from slipstream.testing import VirtualClock, VirtualEventLoop, new_virtual_loop

from .conftest import RunVirtual


def test_advance_moves_the_clock_and_is_counted() -> None:
    clock = VirtualClock(start=5.0, autojump=False)
    clock.advance(2.5)
    clock.advance(0)
    assert clock.time() == 7.5
    assert clock.statistics() == {"time": 7.5, "jumps": 0, "jumped": 0.0, "advanced": 2.5}


@pytest.mark.parametrize(
    ("seconds", "error"),
    [(-1.0, ValueError), (math.nan, ValueError), (math.inf, ValueError), ("1", TypeError),
     (None, TypeError)],
)
def test_advance_refuses_what_is_not_a_step_forward(seconds: object, error: type) -> None:
    clock = VirtualClock()
    with pytest.raises(error):
        clock.advance(seconds)  # type: ignore[arg-type]
    assert clock.time() == 0.0


@pytest.mark.parametrize(
    ("options", "error"),
    [({"start": math.nan}, ValueError), ({"start": "0"}, TypeError),
     ({"autojump_threshold": -0.5}, ValueError), ({"autojump_threshold": None}, TypeError)],
)
def test_bad_clock_options_are_refused(options: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        VirtualClock(**options)  # type: ignore[arg-type]
    with pytest.raises(error):
        new_virtual_loop(**options)  # type: ignore[arg-type]


def test_autojumps_are_counted(run_virtual: RunVirtual) -> None:
    clock = VirtualClock(start=10.0)

    async def main() -> None:
        await asyncio.sleep(1.5)
        await asyncio.sleep(2.0)

    run_virtual(main(), clock=clock)
    assert clock.statistics() == {"time": 13.5, "jumps": 2, "jumped": 3.5, "advanced": 0.0}


def test_the_loop_time_is_the_clock_and_the_clock_serves_one_open_loop() -> None:
    loop = new_virtual_loop(start=3.0)
    try:
        assert isinstance(loop, VirtualEventLoop)
        assert loop.time() == loop.clock.time() == 3.0
        loop.clock.advance(1.0)
        assert loop.time() == 4.0
        with pytest.raises(RuntimeError, match="already drives a loop"):
            new_virtual_loop(clock=loop.clock)
    finally:
        loop.close()
    # Closed, the loop lets its clock go: a new loop continues from its time.
    again = new_virtual_loop(clock=loop.clock)
    try:
        assert again.time() == 4.0
    finally:
        again.close()


def test_advance_after_the_loop_closed_moves_only_the_clock() -> None:
    loop = new_virtual_loop()
    clock = loop.clock
    loop.close()
    clock.advance(1.0)
    assert clock.time() == 1.0
