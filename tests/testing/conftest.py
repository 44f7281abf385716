"""Fixtures for the virtual-time tests: virtual loops over each real backend."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

import pytest

from slipstream.backends import create_backend
from slipstream.testing import VirtualClock, VirtualEventLoop, new_virtual_loop

T = TypeVar("T")


class RunVirtual(Protocol):
    """Run a coroutine on a fresh virtual loop; keyword options go to new_virtual_loop."""

    def __call__(
        self,
        coro: Coroutine[Any, Any, T],
        *,
        autojump: bool = ...,
        start: float = ...,
        autojump_threshold: float = ...,
        clock: VirtualClock | None = ...,
    ) -> T: ...


@pytest.fixture(params=["epoll", "selector"])
def virtual_loop_factory(request: pytest.FixtureRequest) -> Callable[..., VirtualEventLoop]:
    """new_virtual_loop over the real backend under test (both run every test)."""

    def factory(**options: Any) -> VirtualEventLoop:
        return new_virtual_loop(backend=create_backend(request.param), **options)

    return factory


@pytest.fixture
def run_virtual(virtual_loop_factory: Callable[..., VirtualEventLoop]) -> RunVirtual:
    """Run a coroutine to completion in an asyncio.Runner on a new virtual loop."""

    def runner(coro: Coroutine[Any, Any, T], **options: Any) -> T:
        with asyncio.Runner(loop_factory=lambda: virtual_loop_factory(**options)) as r:
            return r.run(coro)

    return runner
