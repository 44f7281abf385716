"""Event loop policy and entry points: ``new_event_loop``, ``install``, ``run``."""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .event_loop import EventLoop
from .observe import check_blocking_ms, watch_blocking

_T = TypeVar("_T")


def new_event_loop() -> EventLoop:
    """A new slipstream event loop (use as ``loop_factory``).

    With ``SLIPSTREAM_BLOCKING_MS=N`` in the environment, the loop comes with
    a blocked-loop watchdog (see :mod:`slipstream.observe`); with
    ``SLIPSTREAM_INSPECT=1`` it answers ``python -m slipstream ps|pstree PID``
    (see ``slipstream.observe.inspector``).
    """
    loop = EventLoop()
    watch_blocking(loop)
    _watch_if_asked(loop, asked=False)
    return loop


def _new_watched_loop(blocking_ms: float) -> EventLoop:
    loop = EventLoop()
    watch_blocking(loop, blocking_ms)
    return loop


def _new_environment_watched_loop() -> EventLoop:
    # What new_event_loop() makes, less the inspection (run() decides that).
    loop = EventLoop()
    watch_blocking(loop)
    return loop


def _watch_if_asked(loop: EventLoop, *, asked: bool) -> bool:
    """Watch ``loop`` for ``ps``/``pstree`` if ``asked`` or ``SLIPSTREAM_INSPECT`` says so.

    The inspector is imported only then: a process that does not opt in pays nothing.
    """
    if not asked and not os.environ.get("SLIPSTREAM_INSPECT"):  # inspector.ENV_VAR
        return False
    from .observe import inspector

    if not (asked or inspector.inspection_requested()):
        return False
    inspector.watch_loop(loop)
    return True


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
    inspect: bool = False,
) -> _T:
    """Run ``main`` on a new slipstream loop; the contract of :func:`asyncio.run`.

    ``blocking_ms=N`` reports every callback that holds the loop for more than
    N milliseconds, while it does (see :mod:`slipstream.observe`).
    ``inspect=True`` lets ``python -m slipstream ps|pstree PID`` show the loop's tasks while
    it runs (as ``SLIPSTREAM_INSPECT=1`` does); the inspection socket is gone when run returns.
    """
    make: Callable[[], EventLoop] = _new_environment_watched_loop
    if blocking_ms is not None:
        make = functools.partial(_new_watched_loop, check_blocking_ms(blocking_ms))
    watched: list[EventLoop] = []

    def loop_factory() -> EventLoop:
        loop = make()
        if _watch_if_asked(loop, asked=inspect):
            watched.append(loop)
        return loop

    try:
        if sys.version_info >= (3, 12):
            return asyncio.run(main, debug=debug, loop_factory=loop_factory)
        if asyncio._get_running_loop() is not None:
            raise RuntimeError("asyncio.run() cannot be called from a running event loop")
        with asyncio.Runner(debug=debug, loop_factory=loop_factory) as runner:
            return runner.run(main)
    finally:
        if watched:
            from .observe import inspector

            for loop in watched:
                inspector.unwatch_loop(loop)
