"""The Happy Eyeballs planner and address interleaving, without sockets or clocks.

The expected orderings and schedules are asyncio's (``_interleave_addrinfos``
and ``staggered_race``); a few tests check the interleaving against asyncio's
own function directly.
"""

from __future__ import annotations

import asyncio.base_events
import socket

import pytest

from slipstream.net.happy_eyeballs import ConnectPlanner, interleave_by_family

V4, V6 = socket.AF_INET, socket.AF_INET6


def info(family: int, host: str) -> tuple[int, int, int, str, tuple[str, int]]:
    return (family, socket.SOCK_STREAM, 6, "", (host, 80))


ADDRESSES = [
    info(V6, "::1"),
    info(V6, "::2"),
    info(V6, "::3"),
    info(V4, "1.0.0.1"),
    info(V4, "1.0.0.2"),
]


# -- interleaving ------------------------------------------------------------------------------


def test_interleave_alternates_families_starting_with_the_first() -> None:
    hosts = [a[4][0] for a in interleave_by_family(ADDRESSES)]
    assert hosts == ["::1", "1.0.0.1", "::2", "1.0.0.2", "::3"]


def test_interleave_first_family_count_leads_with_that_many() -> None:
    hosts = [a[4][0] for a in interleave_by_family(ADDRESSES, 2)]
    assert hosts == ["::1", "::2", "1.0.0.1", "::3", "1.0.0.2"]


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_interleave_matches_asyncio(count: int) -> None:
    mixed = [ADDRESSES[3], *ADDRESSES[:3], ADDRESSES[4]]
    expected = asyncio.base_events._interleave_addrinfos(mixed, count)  # type: ignore[attr-defined]
    assert interleave_by_family(mixed, count) == expected


def test_interleave_single_family_and_empty() -> None:
    assert interleave_by_family(ADDRESSES[:3]) == ADDRESSES[:3]
    assert interleave_by_family([]) == []


def test_interleave_with_custom_key() -> None:
    assert interleave_by_family(["a1", "a2", "b1"], family=lambda s: s[0]) == ["a1", "b1", "a2"]


# -- the planner ---------------------------------------------------------------------------------


def test_first_attempt_starts_at_once_and_deadline_follows_delay() -> None:
    plan = ConnectPlanner(3, 0.25)
    assert plan.begin(10.0) == [0]
    assert plan.deadline == 10.25
    assert not plan.done
    assert plan.running == {0}


def test_timer_starts_next_attempt_only_when_due() -> None:
    plan = ConnectPlanner(3, 0.25)
    plan.begin(10.0)
    assert plan.timer_expired(10.1) == []
    assert plan.timer_expired(10.25) == [1]
    assert plan.deadline == 10.5
    assert plan.timer_expired(10.6) == [2]
    assert plan.deadline is None  # nothing left to start
    assert plan.running == {0, 1, 2}


def test_failure_of_latest_attempt_starts_next_immediately() -> None:
    plan = ConnectPlanner(3, 0.25)
    plan.begin(0.0)
    assert plan.attempt_failed(0, 0.01) == [1]
    assert plan.deadline == 0.26  # the delay restarts from the new attempt


def test_failure_of_older_attempt_does_not_start_another() -> None:
    # As in staggered_race: attempt n+1 waits for attempt n (not any attempt).
    plan = ConnectPlanner(3, 0.25)
    plan.begin(0.0)
    plan.timer_expired(0.25)
    assert plan.attempt_failed(0, 0.3) == []
    assert plan.running == {1}
    assert plan.attempt_failed(1, 0.31) == [2]


def test_success_cancels_the_others_and_finishes() -> None:
    plan = ConnectPlanner(4, 0.1)
    plan.begin(0.0)
    plan.timer_expired(0.1)
    plan.timer_expired(0.2)
    assert plan.attempt_succeeded(1) == [0, 2]
    assert plan.done
    assert plan.winner == 1
    assert plan.deadline is None
    assert plan.timer_expired(5.0) == []
    assert plan.attempt_failed(3 - 1, 5.0) == []


def test_second_success_loses() -> None:
    plan = ConnectPlanner(2, 0.1)
    plan.begin(0.0)
    plan.timer_expired(0.1)
    assert plan.attempt_succeeded(0) == [1]
    assert plan.attempt_succeeded(1) is None
    assert plan.winner == 0


def test_all_failing_ends_without_winner() -> None:
    plan = ConnectPlanner(2, 0.1)
    plan.begin(0.0)
    assert plan.attempt_failed(0, 0.0) == [1]
    assert not plan.done
    assert plan.attempt_failed(1, 0.0) == []
    assert plan.done
    assert plan.winner is None


def test_no_delay_means_sequential() -> None:
    plan = ConnectPlanner(3, None)
    assert plan.begin(0.0) == [0]
    assert plan.deadline is None
    assert plan.timer_expired(100.0) == []
    assert plan.attempt_failed(0, 1.0) == [1]
    assert plan.attempt_failed(1, 2.0) == [2]
    assert plan.attempt_succeeded(2) == []
    assert plan.winner == 2


def test_nothing_to_try() -> None:
    plan = ConnectPlanner(0, 0.1)
    assert plan.begin(0.0) == []
    assert plan.done
    assert plan.winner is None


def test_cancelled_attempt_just_stops_running() -> None:
    plan = ConnectPlanner(2, 0.1)
    plan.begin(0.0)
    plan.attempt_cancelled(0)
    assert plan.running == frozenset()
    assert plan.deadline is None
    assert not plan.done  # attempt 1 was never started


def test_misuse_is_refused() -> None:
    with pytest.raises(ValueError):
        ConnectPlanner(1, -1.0)
    plan = ConnectPlanner(2, 0.1)
    with pytest.raises(ValueError):
        plan.attempt_failed(0, 0.0)  # never started
    plan.begin(0.0)
    with pytest.raises(RuntimeError):
        plan.begin(0.0)


def test_late_timer_starts_one_attempt_per_call() -> None:
    # A timer that fires very late still starts one attempt, and the next
    # deadline counts from that start: as if each attempt had waited its turn.
    plan = ConnectPlanner(3, 0.1)
    plan.begin(0.0)
    assert plan.timer_expired(5.0) == [1]
    assert plan.deadline == pytest.approx(5.1)
