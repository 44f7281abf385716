"""``python -m slipstream bench`` and ``python -m slipstream demo``."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

from . import report
from .child import FRESH_ALLOCATOR_VARIABLE
from .demo import EXAMPLES, run_examples
from .jobs import Job, Settings, select_jobs
from .loops import KNOWN_LOOPS, METRICS_OFF_LOOPS, available_loops, is_available
from .processes import c_compiler_available, cores
from .runner import run_benchmarks

DESCRIPTION = """\
Side-by-side benchmarks of slipstream, asyncio, uvloop and rloop (each that is installed).
Every measurement runs the loop in a fresh interpreter; rounds are interleaved across loops,
and the table shows medians [min-max] over the rounds and speed-ups (above 1 is faster).

Benchmarks (--only takes these names or their dotted parts, e.g. echo.1k, echo.sock):
  micro                 call_soon chain, call_later fire, call_later+cancel, sleep(0)
                        ping-pong, create_task+gather, Event ping-pong (ns/op)
  echo.MODE.SIZE        echo server, 10 connections, one message in flight each;
                        MODE protocol|streams|sock, SIZE 1k|10k|100k (req/s, server µs/req)
  http                  HTTP/1.1 keep-alive hello world under wrk, 50 connections
  web.uvicorn           uvicorn (httptools) serving a minimal ASGI hello, and aiohttp's
  web.aiohttp           hello handler, under the C load generator's HTTP keep-alive mode,
                        50 connections (req/s, server µs/req; needs uvicorn, httptools, aiohttp)
  scale                 10,000 idle connections: RSS per connection, accept rate
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m slipstream bench",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--loops",
        help=f"comma-separated loops (default: installed ones of {','.join(KNOWN_LOOPS)})",
    )
    parser.add_argument("--only", help="comma-separated benchmarks to run (default: all)")
    parser.add_argument("--rounds", type=int, help="rounds per loop (default 3; --quick: 1)")
    parser.add_argument(
        "--duration", type=float, help="measured seconds per echo/HTTP measurement (default 2)"
    )
    parser.add_argument("--warmup", type=float, help="seconds of load before measuring (0.5)")
    parser.add_argument(
        "--micro-scale", type=float, help="fraction of the micro operation counts (1; --quick 0.02)"
    )
    parser.add_argument("--connections", type=int, default=10, help="echo connections (10)")
    parser.add_argument("--idle", type=int, help="idle connections for scale (10000)")
    parser.add_argument(
        "--fresh-allocator",
        action="store_true",
        help="run loops in glibc malloc's fresh-process state instead of a warmed one"
        " (see docs/benchmarks.md, 'The allocator')",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run of a few seconds: tiny counts, short windows, 1 round",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=Path("results/bench.json"),
        help="where to write the results (default results/bench.json)",
    )
    parser.add_argument(
        "--chart",
        type=Path,
        default=Path("results/bench.png"),
        help="where to write the chart (default results/bench.png)",
    )
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown here")
    parser.add_argument(
        "--report",
        type=Path,
        metavar="JSON",
        help="run nothing: print the table (and write --markdown, --chart) of an earlier run",
    )
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    quick = args.quick
    return Settings(
        duration=args.duration if args.duration is not None else (0.3 if quick else 2.0),
        warmup=args.warmup if args.warmup is not None else (0.1 if quick else 0.5),
        micro_scale=args.micro_scale if args.micro_scale is not None else (0.02 if quick else 1.0),
        connections=args.connections,
        http_connections=50,
        idle_connections=args.idle if args.idle is not None else (500 if quick else 10_000),
    )


def choose_loops(spec: str | None) -> list[str]:
    if not spec:
        return available_loops()
    loops = [name.strip() for name in spec.split(",") if name.strip()]
    for name in loops:
        if name not in KNOWN_LOOPS + METRICS_OFF_LOOPS:
            known = ", ".join(KNOWN_LOOPS + METRICS_OFF_LOOPS)
            raise ValueError(f"unknown loop {name!r} (known: {known})")
    missing = [name for name in loops if not is_available(name)]
    if missing:
        print(
            f"note: not installed, skipped: {', '.join(missing)} (pip install 'slipstream[bench]')",
            file=sys.stderr,
        )
    return [name for name in loops if is_available(name)]


def main(argv: list[str]) -> int:
    """Run the benchmarks; print the table; write JSON and chart. Exit status 2 on bad options."""
    args = parse_args(argv)
    if args.report is not None:
        document = json.loads(args.report.read_text())
        publish(document, args, write_json=False)
        return 0
    try:
        loops = choose_loops(args.loops)
        jobs = select_jobs(args.only.split(",") if args.only else None)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not loops:
        print("error: no loop to benchmark", file=sys.stderr)
        return 2
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    settings = settings_from(args)
    if args.fresh_allocator:
        # Inherited by every child (see child.py); the C programs ignore it.
        os.environ[FRESH_ALLOCATOR_VARIABLE] = "1"
    return run_and_report(jobs, loops, rounds, settings, args)


def run_and_report(
    jobs: list[Job], loops: list[str], rounds: int, settings: Settings, args: argparse.Namespace
) -> int:
    server_core, client_core = cores()
    pinning = (
        f"server on CPU {server_core}, load generator on CPU {client_core}"
        if server_core is not None
        else "not pinned (fewer than 2 CPUs)"
    )
    allocator = "fresh" if os.environ.get(FRESH_ALLOCATOR_VARIABLE) else "warmed"
    print(
        f"loops: {', '.join(loops)}; {rounds} round(s); {pinning}; {allocator} allocator",
        file=sys.stderr,
    )
    if any(job.extra_loops for job in jobs) and not c_compiler_available():
        print("note: no C compiler: the C reference echo row is skipped", file=sys.stderr)
    results = run_benchmarks(jobs, loops, rounds, settings, progress)
    publish(report.summarise(results), args, write_json=True)
    return 0


def publish(document: dict[str, Any], args: argparse.Namespace, write_json: bool) -> None:
    """Print the table; write the JSON, the Markdown table and the chart."""
    print()
    print(report.table(document))
    note = report.load_generator_note(document)
    if note:
        print(note)
    references = report.reference_notes(document)
    if references:
        print("against the reference servers (server CPU per round trip, lower is better):")
        print("\n".join("  " + line for line in references))
    if write_json:
        report.write_json(document, args.json)
        print(f"\nresults: {args.json}")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(report.table(document, markdown=True) + "\n")
        print(f"markdown: {args.markdown}")
    chart_problem = report.write_chart(document, args.chart)
    print(f"chart: {args.chart}" if chart_problem is None else f"note: {chart_problem}")


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def demo(argv: list[str]) -> int:
    """The examples on slipstream, then a short side-by-side benchmark (about a minute)."""
    if EXAMPLES.is_dir():
        status = run_examples(EXAMPLES)
    else:
        print("note: examples/ not found (run the demo from a source checkout to see them)")
        status = 0
    print(
        "\n\033[1m==> a short benchmark (python -m slipstream bench for the full one)\033[0m",
        flush=True,
    )
    rows = "micro,echo.protocol.1k,echo.streams.1k,echo.sock.1k"
    if importlib.util.find_spec("uvicorn") and importlib.util.find_spec("httptools"):
        rows += ",web.uvicorn"  # a framework users know; ~15 s more (the bench extra has it)
    bench_args = [
        *("--only", rows),
        *("--rounds", "2", "--duration", "0.7", "--warmup", "0.2", "--micro-scale", "0.25"),
        *argv,
    ]
    return main(bench_args) or status
