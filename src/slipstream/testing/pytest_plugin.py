"""pytest plugin: async tests on slipstream's loop, and on virtual time.

Registered through the ``pytest11`` entry point, so it loads wherever
slipstream is installed, and it changes nothing until asked:

* ``pytest --slipstream`` runs async tests on slipstream's loop;
* ``@pytest.mark.virtual_time(autojump=True, start=0.0, autojump_threshold=0.0)``
  runs one async test on a virtual loop (:func:`slipstream.testing.new_virtual_loop`),
  with or without ``--slipstream``;
* the ``virtual_clock`` fixture is that loop's :class:`~slipstream.testing.VirtualClock`.

Who runs an async test:

* a test that pytest-asyncio or anyio's plugin owns (marked ``asyncio`` or
  ``anyio``, pytest-asyncio's auto mode, or asking for ``anyio_backend``)
  is theirs.  Under pytest-asyncio, ``--slipstream`` gives it slipstream's
  loop (a virtual one if it is marked ``virtual_time``) through
  pytest-asyncio's ``pytest_asyncio_loop_factories`` hook; under anyio,
  the ``anyio_backend`` fixture names the loop factory (docs/testing.md);
* any other async test that asked (``--slipstream`` or the marker) runs here,
  in an :class:`asyncio.Runner` of its own.

This module imports neither pytest-asyncio nor anyio: it reaches them only
through the hooks and fixtures they document.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from ..policy import new_event_loop
from .clock import VirtualClock
from .loop import new_virtual_loop

MARKER = "virtual_time"
_MARKER_HELP = (
    f"{MARKER}(autojump=True, start=0.0, autojump_threshold=0.0): run this async test "
    "on a slipstream loop with virtual time (slipstream.testing.new_virtual_loop)"
)
_OTHER_RUNNERS = ("asyncio", "anyio")

# The clock of each test that uses virtual time, made on first use by
# whichever comes first: the virtual_clock fixture or the loop factory.
_clock_key = pytest.StashKey[VirtualClock]()

# The test being set up, run or torn down: a loop factory handed to
# pytest-asyncio at collection time is called during its setup and needs
# the clock of that test.
_current_item_key = pytest.StashKey["pytest.Item | None"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("slipstream", "slipstream event loop")
    group.addoption(
        "--slipstream",
        action="store_true",
        default=False,
        help="run async tests on slipstream's event loop (also those of pytest-asyncio)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", _MARKER_HELP)
    if config.getoption("slipstream") and hasattr(config.hook, "pytest_asyncio_loop_factories"):
        config.pluginmanager.register(PytestAsyncioLoops(), "slipstream-pytest-asyncio")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> Any:
    item.config.stash[_current_item_key] = item
    try:
        return (yield)
    finally:
        item.config.stash[_current_item_key] = None


@pytest.fixture
def virtual_clock(request: pytest.FixtureRequest) -> VirtualClock:
    """The virtual clock of this test's loop.

    On a test marked ``virtual_time`` (or given a loop by
    ``new_virtual_loop(clock=virtual_clock)``) it is the loop's ``time()``;
    ``virtual_clock.advance(seconds)`` moves it by hand.
    """
    return clock_for(request.node)


def clock_for(item: pytest.Item) -> VirtualClock:
    """The virtual clock of ``item``, made from its ``virtual_time`` marker on first use."""
    clock = item.stash.get(_clock_key, None)
    if clock is None:
        clock = VirtualClock(**_marker_options(item))
        item.stash[_clock_key] = clock
    return clock


def _marker_options(item: pytest.Item) -> dict[str, Any]:
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return {}
    if marker.args:
        raise pytest.UsageError(f"{item.nodeid}: {MARKER} takes keyword arguments only")
    allowed = {"autojump", "start", "autojump_threshold"}
    unknown = set(marker.kwargs) - allowed
    if unknown:
        raise pytest.UsageError(
            f"{item.nodeid}: unknown {MARKER} argument(s): {', '.join(sorted(unknown))}"
        )
    return dict(marker.kwargs)


def _virtual_loop_for_current_test(config: pytest.Config) -> asyncio.AbstractEventLoop:
    item = config.stash.get(_current_item_key, None)
    if item is None:
        raise RuntimeError("a virtual_time loop can only be made while a test runs")
    return new_virtual_loop(clock=clock_for(item))


class PytestAsyncioLoops:
    """pytest-asyncio's loop-factory hook, registered under ``--slipstream`` only.

    pytest-asyncio asks it at collection time which loops a test runs on:
    slipstream's, or a virtual one for a test marked ``virtual_time``.
    """

    @pytest.hookimpl(optionalhook=True)
    def pytest_asyncio_loop_factories(
        self, config: pytest.Config, item: pytest.Item
    ) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
        if item.get_closest_marker(MARKER) is not None:
            return {"slipstream-virtual": functools.partial(_virtual_loop_for_current_test, config)}
        return {"slipstream": new_event_loop}


def _is_ours(item: pytest.Function) -> bool:
    """Whether this plugin runs ``item``: an async test that asked and no other plugin owns."""
    # pytest-asyncio swaps in a synchronous wrapper for the tests it runs, so
    # a coroutine function here is one nobody else is about to run.
    if not inspect.iscoroutinefunction(item.obj):
        return False
    if any(item.get_closest_marker(name) is not None for name in _OTHER_RUNNERS):
        return False
    if "anyio_backend" in item.fixturenames:
        return False
    return bool(item.get_closest_marker(MARKER) is not None or item.config.getoption("slipstream"))


def pytest_runtest_setup(item: pytest.Item) -> None:
    if (
        item.get_closest_marker(MARKER) is not None
        and item.get_closest_marker("asyncio") is not None
        and not item.config.pluginmanager.has_plugin("slipstream-pytest-asyncio")
    ):
        # pytest-asyncio would run it on its own loop, in real time.
        pytest.fail(
            f"{item.nodeid} is marked {MARKER} and asyncio: pass --slipstream so that "
            "pytest-asyncio runs it on a virtual loop (pytest-asyncio 1.4 or later)",
            pytrace=False,
        )


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not _is_ours(pyfuncitem):
        return None
    if pyfuncitem.get_closest_marker(MARKER) is not None:
        factory: Callable[[], asyncio.AbstractEventLoop] = functools.partial(
            new_virtual_loop, clock=clock_for(pyfuncitem)
        )
    else:
        factory = new_event_loop
    parameters = inspect.signature(pyfuncitem.obj).parameters
    funcargs = pyfuncitem.funcargs
    arguments = {name: funcargs[name] for name in parameters if name in funcargs}
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(pyfuncitem.obj(**arguments))
    return True
