"""Shared fixtures: every behavioural test runs on stock asyncio *and* on slipstream.

A test that takes the ``loop_factory`` fixture is run once per loop, so a
passing suite shows that slipstream behaves like asyncio, not merely that it
does not crash.  ``run(coro)`` runs a coroutine to completion on that loop.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

import slipstream
from slipstream.backends import create_backend

T = TypeVar("T")


def _slipstream_on_selectors() -> asyncio.AbstractEventLoop:
    return slipstream.EventLoop(backend=create_backend("selector"))


LOOP_FACTORIES: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.SelectorEventLoop,
    "slipstream": slipstream.new_event_loop,
    # The portable backend runs the same tests, so both backends stay in lockstep.
    "slipstream-selector": _slipstream_on_selectors,
}


@pytest.fixture(params=sorted(LOOP_FACTORIES))
def loop_factory(request: pytest.FixtureRequest) -> Callable[[], asyncio.AbstractEventLoop]:
    """The loop under test: ``asyncio`` (the reference) or ``slipstream``."""
    return LOOP_FACTORIES[request.param]


@pytest.fixture
def run(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> Callable[[Coroutine[Any, Any, T]], T]:
    """Run a coroutine to completion on a fresh loop of the kind under test."""

    def runner(coro: Coroutine[Any, Any, T]) -> T:
        with asyncio.Runner(loop_factory=loop_factory) as r:
            return r.run(coro)

    return runner


# What asyncio's debug mode (PYTHONASYNCIODEBUG=1 or -X dev) adds to the exception handler's
# reports, and slipstream alike: a server connection that failed before its protocol was
# made, e.g. a TLS handshake the client refused. Outside debug mode both stay silent.
DEBUG_MODE_REPORTS = frozenset({"Error on transport creation for incoming connection"})


def asyncio_debug_mode() -> bool:
    """Whether new loops start in debug mode, by the rule asyncio itself applies."""
    return sys.flags.dev_mode or (
        not sys.flags.ignore_environment and bool(os.environ.get("PYTHONASYNCIODEBUG"))
    )


def unexpected_reports(reported: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The exception-handler reports a test must not see: all of them, but in debug mode
    the ones that mode adds by design (:data:`DEBUG_MODE_REPORTS`)."""
    if not asyncio_debug_mode():
        return reported
    return [context for context in reported if context.get("message") not in DEBUG_MODE_REPORTS]
