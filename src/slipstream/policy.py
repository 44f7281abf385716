"""Event loop policy and entry points: ``new_event_loop``, ``install``, ``run``."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

from .event_loop import EventLoop

_T = TypeVar("_T")


def new_event_loop() -> EventLoop:
    """A new slipstream event loop (use as ``loop_factory``)."""
    return EventLoop()


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """The default asyncio policy, creating slipstream loops."""

    def new_event_loop(self) -> EventLoop:
        return new_event_loop()


def install() -> None:
    """Make slipstream the loop of ``asyncio.run()`` and ``asyncio.new_event_loop()``."""
    asyncio.set_event_loop_policy(EventLoopPolicy())


def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None) -> _T:
    """Run ``main`` on a new slipstream loop; the contract of :func:`asyncio.run`."""
    if sys.version_info >= (3, 12):
        return asyncio.run(main, debug=debug, loop_factory=new_event_loop)
    if asyncio._get_running_loop() is not None:
        raise RuntimeError("asyncio.run() cannot be called from a running event loop")
    with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)
