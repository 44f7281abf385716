"""``python -m slipstream.bench.child SPEC``: one measurement on one loop, in a fresh interpreter.

SPEC is a JSON object: ``{"task": "micro", "loop": L, "names": [...], "scale": S}``
prints ``result {JSON}`` (ns/op per benchmark); ``{"task": "server", "loop": L,
"kind": K, "mode": M, "target": N}`` runs a server from
:mod:`slipstream.bench.servers` (or, for the web rows,
:mod:`slipstream.bench.web_servers`) until terminated.  A fresh interpreter per
measurement keeps one loop's imports, caches and heap out of another's numbers.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from ..transports.allocator import teach_allocator
from .loops import loop_factory
from .micro import run_micro
from .servers import announce, serve

# Set (to anything) by ``bench --fresh-allocator``: leave malloc as a new process has it.
FRESH_ALLOCATOR_VARIABLE = "SLIPSTREAM_BENCH_FRESH_ALLOCATOR"


def main(argv: list[str]) -> int:
    spec: dict[str, Any] = json.loads(argv[0])
    if not os.environ.get(FRESH_ALLOCATOR_VARIABLE):
        # A process that has run for a while has freed a large block, which
        # lets glibc serve 256 KiB reads from its heap; a new one mmaps each
        # of them (asyncio's 1 KiB echo: ~27 µs instead of ~9).  Every loop
        # runs in the warmed state, where each is at its best (see
        # transports/allocator.py and docs/benchmarks.md, "The allocator").
        teach_allocator()
    factory = loop_factory(spec["loop"])
    if spec["task"] == "server" and spec["kind"] == "uvicorn":
        from .web_servers import run_uvicorn  # uvicorn is imported only where it serves

        run_uvicorn(factory)  # uvicorn makes and runs the loop from the factory itself
        return 0
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
