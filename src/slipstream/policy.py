"""Event loop policy and entry points: ``new_event_loop``, ``install``, ``run``."""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .event_loop import EventLoop
from .observe import check_blocking_ms, watch_blocking

_T = TypeVar("_T")


def new_event_loop() -> EventLoop:
    """A new slipstream event loop (use as ``loop_factory``).

    With ``SLIPSTREAM_BLOCKING_MS=N`` in the environment, the loop comes with
    a blocked-loop watchdog (see :mod:`slipstream.observe`).
    """
    loop = EventLoop()
    watch_blocking(loop)
    return loop


def _new_watched_loop(blocking_ms: float) -> EventLoop:
    loop = EventLoop()
    watch_blocking(loop, blocking_ms)
    return loop


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """The default asyncio policy, creating slipstream loops."""

    def new_event_loop(self) -> EventLoop:
        return new_event_loop()


def install() -> None:
    """Make slipstream the loop of ``asyncio.run()`` and ``asyncio.new_event_loop()``."""
    asyncio.set_event_loop_policy(EventLoopPolicy())


def run(
    main: Coroutine[Any, Any, _T],
    *,
    debug: bool | None = None,
    blocking_ms: float | None = None,
) -> _T:
    """Run ``main`` on a new slipstream loop; the contract of :func:`asyncio.run`.

    ``blocking_ms=N`` reports every callback that holds the loop for more than
    N milliseconds, while it does (see :mod:`slipstream.observe`).
    """
    factory: Callable[[], EventLoop] = new_event_loop
    if blocking_ms is not None:
        factory = functools.partial(_new_watched_loop, check_blocking_ms(blocking_ms))
    if sys.version_info >= (3, 12):
        return asyncio.run(main, debug=debug, loop_factory=factory)
    if asyncio._get_running_loop() is not None:
        raise RuntimeError("asyncio.run() cannot be called from a running event loop")
    with asyncio.Runner(debug=debug, loop_factory=factory) as runner:
        return runner.run(main)
