"""The stress scenarios at their short scale, on every loop (``python -m tests.stress --full``
runs the full scale)."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import LOOP_FACTORIES
from tests.stress.backpressure import backpressure
from tests.stress.common import SHORT, LoopFactory, run_on
from tests.stress.faults_net import network_faults
from tests.stress.faults_os import close_with_pending_work, os_faults
from tests.stress.fuzz import fuzz
from tests.stress.soak import soak


def test_soak(loop_factory: LoopFactory) -> None:
    figures = run_on(loop_factory, soak(SHORT))
    assert figures["fds_after_each_round"] == [figures["fds_before"]] * SHORT.soak_rounds
    assert figures["payload_bytes"] > 0


def test_backpressure(loop_factory: LoopFactory) -> None:
    figures = run_on(loop_factory, backpressure(SHORT))
    for writer in ("protocol", "streams"):
        assert figures[writer]["waits"] > 0
        assert figures[writer]["largest_excess_over_high_water"] <= 256 * 1024


def test_network_faults(loop_factory: LoopFactory) -> None:
    figures = run_on(loop_factory, network_faults(SHORT))
    assert figures["refused"] == figures["timed_out"] == SHORT.storm_connections
    assert figures["fds_after"] == figures["fds_before"]


def test_os_faults(loop_factory: LoopFactory) -> None:
    figures = run_on(loop_factory, os_faults(SHORT))
    assert figures["children"]["children"] == SHORT.children
    assert figures["call_soon_threadsafe"]["callbacks"] == SHORT.threadsafe_callbacks


def test_closing_the_loop_with_pending_work(loop_factory: LoopFactory) -> None:
    figures = close_with_pending_work(loop_factory)
    assert figures["fds_after_collect"] == figures["fds_before"]


@pytest.mark.parametrize("candidate", sorted(set(LOOP_FACTORIES) - {"asyncio"}))
def test_cancellation_fuzz_matches_asyncio(candidate: str) -> None:
    figures = fuzz(range(SHORT.fuzz_seeds), asyncio.SelectorEventLoop, LOOP_FACTORIES[candidate])
    assert figures["programs"] == SHORT.fuzz_seeds
    assert figures["nodes_cancelled"] > 0
