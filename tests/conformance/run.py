"""Run CPython's own asyncio test suite (the manifest's part of it) against slipstream's loop.

    python -m tests.conformance.run [--loop slipstream|asyncio] [--scope core|all]
        [--manifest PATH] [--modules test_tasks,test_locks] [--jobs N] [--timeout SECONDS]
        [--json OUT] [--verbose]

Run it from the repository root with any of Python 3.11-3.13: the manifest defaults to the one
for the running Python.  Each test module runs in its own child process (tests/conformance/
harness.py); a test that outlives --timeout is recorded as a hang and the rest of its module is
run in a fresh child.  Everything in the manifest is run and reported; the exit status is 0 only
if no test in --scope (tests/conformance/scope.py) failed, errored or hung.  ``--loop asyncio``
runs stock asyncio's loop through the same patched path: the harness's self-check.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import chain
from pathlib import Path

from tests.conformance.harness import LOOP_NAMES, OUTCOMES
from tests.conformance.scope import PREFIX, SCOPES, exclusion_reason, module_of

REPO = Path(__file__).resolve().parents[2]
SHARED_MANIFESTS = REPO.parent / "shared" / "conformance"
LOCAL_MANIFESTS = Path(__file__).resolve().parent / "manifests"
# How long the parent waits for a child that neither writes an event nor exits, beyond the
# per-test timeout, before killing it itself (the child's own watchdog should fire first).
BACKSTOP_GRACE = 60.0
EXCERPT_LINES = 12
# The first line faulthandler.dump_traceback_later() writes when it fires.
WATCHDOG_LINE = re.compile(r"^Timeout \(\d+:\d\d:\d\d(?:\.\d+)?\)!$", re.MULTILINE)
# Children alive right now (their process-group ids), to kill if the run is interrupted.
LIVE_CHILDREN: set[int] = set()


@dataclass
class TestResult:
    id: str
    outcome: str
    detail: str = ""
    duration: float = 0.0
    loops: int = 0
    in_scope: bool = True


@dataclass
class ModuleReport:
    module: str
    results: dict[str, TestResult] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    children: int = 0
    elapsed: float = 0.0
    loop_origin: str = ""


@dataclass
class ChildRun:
    results: dict[str, TestResult]
    notes: list[str]
    running: str | None  # the test that started and never reported
    loop_origin: str
    done: bool
    returncode: int
    killed: bool
    log: str


@dataclass(frozen=True)
class Options:
    loop: str
    scope: str
    timeout: float
    workdir: Path


# --------------------------------------------------------------------------------------------
# Manifest


def default_manifest() -> Path:
    name = f"manifest-{sys.version_info[0]}.{sys.version_info[1]}.txt"
    directory = SHARED_MANIFESTS if SHARED_MANIFESTS.is_dir() else LOCAL_MANIFESTS
    return directory / name


def read_manifest(path: Path) -> list[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def group_by_module(test_ids: Iterable[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for test_id in test_ids:
        groups.setdefault(PREFIX + module_of(test_id), []).append(test_id)
    return groups


# --------------------------------------------------------------------------------------------
# Running one module, in as many children as hangs require


def _read_events(path: Path) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    if not path.exists():
        return events
    for line in path.read_text(errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
    return events


def _kill_group(pgid: int) -> None:
    """Kill the child's process group: the child and whatever it spawned and left behind."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _wait(proc: subprocess.Popen[bytes], events: Path, backstop: float) -> bool:
    """Wait for the child; kill it if the events file stops growing for ``backstop`` seconds.
    Returns whether it had to be killed."""
    last_size, last_change = -1, time.monotonic()
    while True:
        try:
            proc.wait(timeout=0.5)
            return False
        except subprocess.TimeoutExpired:
            pass
        size = events.stat().st_size if events.exists() else 0
        now = time.monotonic()
        if size != last_size:
            last_size, last_change = size, now
        elif now - last_change > backstop:
            _kill_group(proc.pid)
            proc.wait()
            return True


def run_child(module: str, test_ids: list[str], opts: Options, attempt: int) -> ChildRun:
    """Run ``test_ids`` of ``module`` in one child process and read back what it reported."""
    stem = f"{module.rsplit('.', 1)[-1]}-{attempt}"
    events, tests_file, log, scratch = (
        opts.workdir / f"{stem}.{kind}" for kind in ("events", "tests", "log", "tmp")
    )
    scratch.mkdir()
    tests_file.write_text("\n".join(test_ids) + "\n")
    flags = {
        "--loop": opts.loop,
        "--module": module,
        "--tests-file": str(tests_file),
        "--events": str(events),
        "--timeout": str(opts.timeout),
        "--repo": str(REPO),
        "--workdir": str(scratch),
    }
    command = [sys.executable, "-m", "tests.conformance.harness", *chain(*flags.items())]
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        LIVE_CHILDREN.add(proc.pid)
        killed = _wait(proc, events, opts.timeout + BACKSTOP_GRACE)
    _kill_group(proc.pid)
    LIVE_CHILDREN.discard(proc.pid)

    log_text = log.read_text(errors="replace")
    run = ChildRun({}, [], None, "", False, proc.returncode, killed, log_text)
    for event in _read_events(events):
        kind = event.get("ev")
        if kind == "start":
            run.running = str(event["id"])
        elif kind == "result":
            test_id = str(event["id"])
            run.results[test_id] = TestResult(
                test_id,
                str(event["outcome"]),
                str(event.get("detail", "")),
                float(str(event.get("duration", 0.0))),
                int(str(event.get("loops", 0))),
            )
            if run.running == test_id:
                run.running = None
        elif kind == "loop":
            run.loop_origin = str(event["origin"])
        elif kind == "note":
            run.notes.append(str(event["text"]))
        elif kind == "done":
            run.done = True
    return run


# Frames of the runner itself, cut from the bottom of a hung test's stack.
_RUNNER_FRAMES = ("/unittest/", "<frozen runpy>", "harness.py")
_FULL_DUMP = "\n\nfull watchdog dump:"


def _hang_detail(log: str, timeout: float) -> str:
    """The watchdog's dump, the test's own thread first, cut down to the test's frames."""
    found = list(WATCHDOG_LINE.finditer(log))
    dump = log[found[-1].start() :] if found else log[-4000:]
    blocks: list[list[str]] = []
    for line in dump.splitlines()[1:]:
        if line.startswith(("Thread 0x", "Current thread 0x")):
            blocks.append([line])
        elif blocks and line.strip():
            blocks[-1].append(line)
    main = next((b for b in blocks if any("harness.py" in line for line in b)), None)
    frames = main or ["(no traceback in the child's log)"]
    while len(frames) > 1 and any(p in frames[-1] for p in _RUNNER_FRAMES):
        frames.pop()
    header = f"hung past {timeout:g} s; watchdog traceback (most recent call first):"
    return "\n".join([header, *frames, _FULL_DUMP, dump[-6000:]])


def run_module(module: str, test_ids: list[str], opts: Options) -> ModuleReport:
    """Run a module's tests, in a fresh child after each hang or crash, until all have a result."""
    report = ModuleReport(module)
    started = time.monotonic()
    remaining = list(test_ids)
    while remaining:
        report.children += 1
        run = run_child(module, remaining, opts, report.children)
        report.results.update(run.results)
        report.notes.extend(run.notes)
        report.loop_origin = report.loop_origin or run.loop_origin
        if run.done:
            break
        timed_out = run.killed or WATCHDOG_LINE.search(run.log) is not None
        what = f"hung past {opts.timeout:g} s" if timed_out else f"died ({run.returncode})"
        if run.running is not None:
            if timed_out:
                outcome, detail = "hang", _hang_detail(run.log, opts.timeout)
            else:
                outcome, detail = "error", f"child process {what}:\n{run.log[-4000:]}"
            report.results[run.running] = TestResult(run.running, outcome, detail, opts.timeout)
        else:  # in a class or module fixture, or at exit
            report.notes.append(f"child {what} outside any test:\n{run.log[-4000:]}")
        before = len(remaining)
        remaining = [t for t in remaining if t not in report.results]
        if len(remaining) == before:  # no progress (e.g. the import hangs): don't loop
            for test_id in remaining:
                detail = f"child {what} before running this test:\n{run.log[-4000:]}"
                report.results[test_id] = TestResult(test_id, "error", detail)
            break
    for test_id in test_ids:  # a harness bug, if it ever happens
        report.results.setdefault(test_id, TestResult(test_id, "error", "no result reported"))
    for test_id, result in report.results.items():
        result.in_scope = exclusion_reason(test_id, opts.scope) is None
    report.elapsed = time.monotonic() - started
    return report


# --------------------------------------------------------------------------------------------
# Reporting


def count(results: Iterable[TestResult]) -> Counter[str]:
    return Counter(result.outcome for result in results)


def format_counts(counts: Counter[str]) -> str:
    return "  ".join(f"{outcome} {counts[outcome]:3d}" for outcome in OUTCOMES)


def module_line(report: ModuleReport) -> str:
    name = report.module.removeprefix(PREFIX)
    counts = count(report.results.values())
    extra = f"  ({report.children} children)" if report.children > 1 else ""
    total = len(report.results)
    return f"{name:24} {total:4d} tests  {format_counts(counts)}  {report.elapsed:6.1f} s{extra}"


def excerpt(result: TestResult, lines: int = EXCERPT_LINES) -> str:
    """The end of a traceback (where the exception is), the top of a hang's stack."""
    detail = result.detail.split(_FULL_DUMP, 1)[0]
    kept = [line for line in detail.rstrip().splitlines() if line.strip()]
    if result.outcome == "hang" or len(kept) <= lines:
        kept = kept[:lines]
    elif kept[0].startswith("Traceback"):
        kept = kept[-lines:]
    else:  # keep what the detail says it is ("child process died ...")
        kept = [kept[0], "...", *kept[-(lines - 1) :]]
    return "\n".join("        " + line for line in kept)


def figure(label: str, results: list[TestResult]) -> str:
    counts = count(results)
    total = len(results)
    percent = 100.0 * counts["pass"] / total if total else 100.0
    return f"{label}: {counts['pass']}/{total} passed ({percent:.1f}%)  {format_counts(counts)}"


def print_verbose(results: list[TestResult]) -> None:
    bad = [r for r in results if r.outcome in ("fail", "error", "hang")]
    previous = ""
    for result in sorted(bad, key=lambda r: (not r.in_scope, r.id)):
        tag = "in scope" if result.in_scope else "out of scope"
        print(f"  {result.outcome.upper():5} {result.id.removeprefix(PREFIX)}  [{tag}]")
        text = excerpt(result)
        print("        (same as above)" if text == previous else text)
        previous = text


def print_skips(results: list[TestResult]) -> None:
    skips = [r for r in results if r.outcome == "skip" and r.in_scope]
    if skips:
        print("\nIn-scope skips (acceptable only where --loop asyncio skips them too):")
        for result in sorted(skips, key=lambda r: r.id):
            reason = result.detail.strip().splitlines()[-1] if result.detail.strip() else ""
            print(f"  SKIP  {result.id.removeprefix(PREFIX)}: {reason}")


def write_json(path: Path, args: argparse.Namespace, reports: list[ModuleReport]) -> None:
    results = [r for report in reports for r in report.results.values()]
    document = {
        "python": platform.python_version(),
        "loop": args.loop,
        "scope": args.scope,
        "manifest": str(args.manifest),
        "summary": {
            "all": dict(count(results)),
            "scope": dict(count(r for r in results if r.in_scope)),
        },
        "modules": {
            report.module: {
                "elapsed": round(report.elapsed, 2),
                "children": report.children,
                "notes": report.notes,
            }
            for report in reports
        },
        "tests": [{"module": module_of(r.id), **asdict(r)} for r in results],
    }
    path.write_text(json.dumps(document, indent=1) + "\n")


# --------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.conformance.run",
        description="Run CPython's test_asyncio manifest against a foreign event loop.",
    )
    parser.add_argument("--loop", choices=LOOP_NAMES, default="slipstream")
    parser.add_argument("--scope", choices=SCOPES, default="core")
    parser.add_argument("--manifest", type=Path, default=None)
    parser.add_argument("--modules", default="", help="comma-separated, e.g. test_tasks,test_locks")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=30.0, help="per test, in seconds")
    parser.add_argument("--json", type=Path, default=None, help="write per-test results here")
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    if args.manifest is None:
        args.manifest = default_manifest()
    if not args.manifest.is_file():
        parser.error(f"manifest not found: {args.manifest}")
    if args.jobs < 1 or args.timeout <= 0:
        parser.error("--jobs and --timeout must be positive")
    return args


def select_modules(args: argparse.Namespace) -> dict[str, list[str]]:
    groups = group_by_module(read_manifest(args.manifest))
    wanted = [m.strip() for m in args.modules.split(",") if m.strip()]
    if not wanted:
        return groups
    names = [PREFIX + m.removeprefix(PREFIX) for m in wanted]
    unknown = [n.removeprefix(PREFIX) for n in names if n not in groups]
    if unknown:
        sys.exit(f"error: not in {args.manifest.name}: {', '.join(unknown)}")
    return {name: groups[name] for name in names}


def run_all(modules: dict[str, list[str]], opts: Options, jobs: int) -> list[ModuleReport]:
    """Run the modules ``jobs`` at a time, printing a line as each one finishes."""
    lock = threading.Lock()

    def work(module: str) -> ModuleReport:
        report = run_module(module, modules[module], opts)
        with lock:
            print(module_line(report), flush=True)
        return report

    # Biggest modules first, so that the workers finish at about the same time.
    order = sorted(modules, key=lambda m: -len(modules[m]))
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        return sorted(pool.map(work, order), key=lambda r: r.module)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    modules = select_modules(args)
    signal.signal(signal.SIGTERM, _interrupt)  # e.g. a CI timeout: take the children along
    total = sum(len(ids) for ids in modules.values())
    print(
        f"Python {platform.python_version()}, loop {args.loop}, scope {args.scope}, "
        f"{args.manifest} ({total} tests in {len(modules)} modules), "
        f"{args.jobs} jobs, {args.timeout:g} s per test",
        flush=True,
    )
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="conformance-"))
    try:
        opts = Options(args.loop, args.scope, args.timeout, workdir)
        reports = run_all(modules, opts, args.jobs)
    except KeyboardInterrupt:
        for pgid in list(LIVE_CHILDREN):
            _kill_group(pgid)
        shutil.rmtree(workdir, ignore_errors=True)
        print("interrupted", file=sys.stderr, flush=True)
        os._exit(130)  # don't wait for the workers: they would start the next modules
    shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started

    results = [r for report in reports for r in report.results.values()]
    scoped = [r for r in results if r.in_scope]
    if args.verbose:
        print()
        print_verbose(results)
        for report in reports:
            for note in report.notes:
                print(f"  NOTE  {report.module.removeprefix(PREFIX)}: {note.strip()[:500]}")
    print()
    print(figure("whole manifest", results))
    print(figure(f"in scope '{args.scope}'", scoped))
    print_skips(results)
    origins = sorted({r.loop_origin for r in reports if r.loop_origin})
    untouched = sum(1 for r in results if r.outcome == "pass" and r.loops == 0)
    print(f"loop under test: {', '.join(origins) or '(never loaded)'}")
    print(f"passes that created no loop through the harness: {untouched}")
    print(f"elapsed {elapsed:.1f} s")
    if args.json is not None:
        write_json(args.json, args, reports)
    counts = count(scoped)
    failed = counts["fail"] + counts["error"] + counts["hang"]
    print(f"conformance: {counts['pass']} passed, {failed} failed, {counts['skip']} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
