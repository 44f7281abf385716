"""``python -m tests.stress [--full] [--loop NAME] [--json PATH]``: run every stress scenario.

Without ``--full`` it runs the short scale that pytest runs.  ``--loop asyncio``
runs the same scenarios on stock asyncio for comparison (its fuzz then checks
asyncio against itself, the fuzz's own determinism check).  The figures are
printed as JSON, one scenario at a time, with how long each took.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import slipstream
from tests.conftest import LOOP_FACTORIES
from tests.stress.backpressure import backpressure
from tests.stress.common import FULL, SHORT, Figures, open_fds, rss_bytes, run_on
from tests.stress.faults_net import network_faults
from tests.stress.faults_os import close_with_pending_work, os_faults
from tests.stress.fuzz import fuzz
from tests.stress.soak import soak


def bad_input(full: bool) -> Figures:
    """The hypothesis test, in its own pytest process (its example count is set by env)."""
    env = dict(os.environ, SLIPSTREAM_STRESS_FULL="1" if full else "0")
    test = str(Path(__file__).with_name("test_bad_input.py"))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    if done.returncode != 0:
        raise AssertionError(f"bad-input test failed:\n{done.stdout[-4000:]}")
    return {"examples": 3000 if full else 150, "pytest": summary}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.stress", description=__doc__)
    parser.add_argument("--full", action="store_true", help="the full scale (minutes)")
    parser.add_argument("--loop", choices=sorted(LOOP_FACTORIES), default="slipstream")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    scale = FULL if args.full else SHORT
    factory = LOOP_FACTORIES[args.loop]
    report: dict[str, Any] = {
        "loop": args.loop,
        "build": "compiled" if slipstream.compiled else "pure",
        "python": platform.python_version(),
        "scale": scale.name,
        "fds_at_start": open_fds(),
        "rss_mib_at_start": round(rss_bytes() / 2**20, 1),
    }
    scenarios: list[tuple[str, Callable[[], Figures]]] = [
        ("soak", lambda: run_on(factory, soak(scale))),
        ("backpressure", lambda: run_on(factory, backpressure(scale))),
        ("network_faults", lambda: run_on(factory, network_faults(scale))),
        ("os_faults", lambda: run_on(factory, os_faults(scale))),
        ("close_with_pending_work", lambda: close_with_pending_work(factory)),
        (
            "cancellation_fuzz",
            lambda: fuzz(range(scale.fuzz_seeds), asyncio.SelectorEventLoop, factory),
        ),
        ("bad_input", lambda: bad_input(args.full)),
    ]
    failed = 0
    for name, scenario in scenarios:
        started = time.perf_counter()
        try:
            figures: Any = scenario()
        except AssertionError as exc:
            failed += 1
            figures = {"FAILED": str(exc)}
        figures = {"seconds": round(time.perf_counter() - started, 1), **figures}
        report[name] = figures
        print(json.dumps({name: figures}), flush=True)
    report["fds_at_end"] = open_fds()
    report["rss_mib_at_end"] = round(rss_bytes() / 2**20, 1)
    print(json.dumps({key: report[key] for key in ("fds_at_end", "rss_mib_at_end")}))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"stress ({scale.name}, {args.loop}): {len(scenarios) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
