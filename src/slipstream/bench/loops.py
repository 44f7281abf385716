"""The loops a benchmark can run on, by name, and how to make one of each.

The parent process only asks which loops are *available* (importable); the loops
themselves are created in the child interpreters that run the measurements.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
from collections.abc import Callable

# In the order tables list them: the baseline first, then the peers, then us.
KNOWN_LOOPS = ("asyncio", "uvloop", "rloop", "slipstream")
# Loops slipstream is compared against as "the best peer" (asyncio is the baseline, not a peer).
PEERS = ("uvloop", "rloop")
# The C epoll echo server: a reference row for the kernel's share, not an event loop.
C_REFERENCE = "c-epoll"

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def is_available(name: str) -> bool:
    """Whether the loop called ``name`` can be imported in this interpreter."""
    if name in ("asyncio", "slipstream"):
        return True
    if name in ("uvloop", "rloop"):
        return importlib.util.find_spec(name) is not None
    return False


def available_loops() -> list[str]:
    """The known loops that are installed, in table order."""
    return [name for name in KNOWN_LOOPS if is_available(name)]


def loop_factory(name: str) -> LoopFactory:
    """A callable returning a new event loop of the kind called ``name``."""
    if name == "asyncio":
        return asyncio.SelectorEventLoop
    if name == "slipstream":
        from slipstream import new_event_loop

        return new_event_loop
    if name in ("uvloop", "rloop"):
        module = importlib.import_module(name)
        factory: LoopFactory = module.new_event_loop
        return factory
    raise ValueError(f"unknown loop {name!r} (known: {', '.join(KNOWN_LOOPS)})")
