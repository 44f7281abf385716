"""The loops a benchmark can run on, by name, and how to make one of each.

The parent process only asks which loops are *available* (importable); the loops
themselves are created in the child interpreters that run the measurements.

With the compiled core in use, slipstream is measured twice: ``slipstream``
(compiled) and ``slipstream-pure`` (the same loop from its Python sources: the
child runs with ``SLIPSTREAM_PURE=1``, see :func:`loop_environment`).

``slipstream-nometrics`` and ``slipstream-pure-nometrics`` are the same loops
with their metrics switched off (``SLIPSTREAM_METRICS=0``): not measured by
default, they are there to be named with ``--loops`` for a "metrics off"
figure beside the default, metrics-on rows.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
from collections.abc import Callable

# In the order tables list them: the baseline first, then the peers, then us.
KNOWN_LOOPS = ("asyncio", "uvloop", "rloop", "slipstream", "slipstream-pure")
# Named on request only (see the module docstring).
METRICS_OFF_LOOPS = ("slipstream-nometrics", "slipstream-pure-nometrics")
_METRICS_OFF_SUFFIX = "-nometrics"
# Loops slipstream is compared against as "the best peer" (asyncio is the baseline, not a peer).
PEERS = ("uvloop", "rloop")
# The C epoll echo server: a reference row for the kernel's share, not an event loop.
C_REFERENCE = "c-epoll"
PY_REFERENCE = "py-epoll"
# Reference servers shown beside the loops on the Protocol echo rows: the
# kernel's share (c_echo.c) and the least Python can add to it (py_echo.py).
REFERENCES = (C_REFERENCE, PY_REFERENCE)

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def is_available(name: str) -> bool:
    """Whether the loop called ``name`` can be imported in this interpreter."""
    if name in METRICS_OFF_LOOPS:
        name = name.removesuffix(_METRICS_OFF_SUFFIX)
    if name in ("asyncio", "slipstream"):
        return True
    if name == "slipstream-pure":
        # A separate row only when "slipstream" itself is the compiled build.
        import slipstream

        return slipstream.compiled
    if name in ("uvloop", "rloop"):
        return importlib.util.find_spec(name) is not None
    return False


def available_loops() -> list[str]:
    """The known loops that are installed, in table order."""
    return [name for name in KNOWN_LOOPS if is_available(name)]


def loop_environment(name: str) -> dict[str, str]:
    """Environment variables a child process needs to run the loop called ``name``."""
    environment = {"SLIPSTREAM_METRICS": "0"} if name in METRICS_OFF_LOOPS else {}
    if name.removesuffix(_METRICS_OFF_SUFFIX) == "slipstream-pure":
        environment["SLIPSTREAM_PURE"] = "1"
    return environment


def loop_factory(name: str) -> LoopFactory:
    """A callable returning a new event loop of the kind called ``name``."""
    if name in METRICS_OFF_LOOPS:
        name = name.removesuffix(_METRICS_OFF_SUFFIX)
    if name == "asyncio":
        return asyncio.SelectorEventLoop
    if name in ("slipstream", "slipstream-pure"):
        import slipstream

        if name == "slipstream-pure" and slipstream.compiled:
            raise RuntimeError("slipstream-pure needs SLIPSTREAM_PURE=1 (see loop_environment)")
        return slipstream.new_event_loop
    if name in ("uvloop", "rloop"):
        module = importlib.import_module(name)
        factory: LoopFactory = module.new_event_loop
        return factory
    raise ValueError(f"unknown loop {name!r} (known: {', '.join(KNOWN_LOOPS)})")
