"""``python -m slipstream.bench.child SPEC``: one measurement on one loop, in a fresh interpreter.

SPEC is a JSON object: ``{"task": "micro", "loop": L, "names": [...], "scale": S}``
prints ``result {JSON}`` (ns/op per benchmark); ``{"task": "server", "loop": L,
"kind": K, "mode": M, "target": N}`` runs a server from
:mod:`slipstream.bench.servers` until terminated.  A fresh interpreter per
measurement keeps one loop's imports, caches and heap out of another's numbers.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from .loops import loop_factory
from .micro import run_micro
from .servers import announce, serve

# Set (to anything) by ``bench --fresh-allocator``: leave malloc as a new process has it.
FRESH_ALLOCATOR_VARIABLE = "SLIPSTREAM_BENCH_FRESH_ALLOCATOR"


def warm_allocator() -> None:
    """Put glibc's malloc in the state of a process that has run for a while.

    A new process serves every block of 128 KiB or more with its own
    ``mmap()``.  glibc raises that threshold (and the heap's trim threshold,
    to twice as much) the first time such a block is *freed*, so a process
    that has ever freed a megabyte serves large blocks from its heap for
    good.  A loop that reads with ``recv(256 KiB)`` (asyncio; rloop's
    transports allocate as much) never teaches it: each read's block is
    shrunk to the bytes received before it is freed, so in a new process
    every read costs an mmap, a page fault per 4 KiB copied in, and an munmap
    -- a 1 KiB echo then costs asyncio ~27 µs of CPU instead of ~9.  Which
    state a real server is in depends on its history; the benchmark puts
    every loop in the warmed one, where each is at its best, and
    ``--fresh-allocator`` measures the other (docs/benchmarks.md, "The
    allocator").  Elsewhere than glibc this is a harmless allocation.
    """
    block = bytearray(1 << 20)
    del block


def main(argv: list[str]) -> int:
    spec: dict[str, Any] = json.loads(argv[0])
    if not os.environ.get(FRESH_ALLOCATOR_VARIABLE):
        warm_allocator()
    factory = loop_factory(spec["loop"])
    with asyncio.Runner(loop_factory=factory) as runner:
        if spec["task"] == "micro":
            results = runner.run(run_micro(list(spec["names"]), float(spec["scale"])))
            announce("result " + json.dumps(results))
        elif spec["task"] == "server":
            runner.run(serve(spec["kind"], spec.get("mode", ""), int(spec.get("target", 0))))
        else:
            raise ValueError(f"unknown task {spec['task']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
