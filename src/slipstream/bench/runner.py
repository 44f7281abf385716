"""Running the jobs: rounds interleaved across loops, progress, collected samples.

Interleaving matters on a shared VM: a noisy minute then slows one round of
every loop rather than every round of one loop, and the median over rounds
discards it.  Each round also rotates the order of the loops, so no loop always
runs right after the same neighbour (or always first, on a cold machine).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from .jobs import Job, Measurement, Metric, Settings
from .processes import BenchError


@dataclass
class Cell:
    """Everything measured for one metric on one loop, over the rounds."""

    samples: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[dict[str, float]] = field(default_factory=list)


@dataclass
class Results:
    """The raw outcome of a run, before statistics."""

    metrics: list[Metric]
    loops: list[str]
    rounds: int
    settings: Settings
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)
    seconds: float = 0.0

    def cell(self, metric: str, loop: str) -> Cell:
        return self.cells.setdefault((metric, loop), Cell())


def loops_for(job: Job, loops: list[str], round_index: int) -> list[str]:
    """The loops ``job`` runs on in this round, rotated by the round number."""
    shift = round_index % len(loops) if loops else 0
    order = loops[shift:] + loops[:shift]
    return order + [extra for extra in job.extra_loops if extra not in order]


def format_value(value: float) -> str:
    """A number in three significant digits, with a k/M suffix for large ones."""
    if value != value:  # NaN
        return "n/a"
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= limit * 10:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def describe(job: Job, measurement: Measurement) -> str:
    """One progress line's worth of a measurement."""
    parts = []
    for metric in job.metrics:
        if metric.key in measurement.values:
            parts.append(f"{format_value(measurement.values[metric.key])} {metric.unit}")
    if len(parts) > 3:
        parts = [*parts[:3], "…"]
    if "loadgen_cpu" in measurement.notes:
        parts.append(f"load generator {measurement.notes['loadgen_cpu']:.0%} CPU")
    return ", ".join(parts)


def run_benchmarks(
    jobs: list[Job],
    loops: list[str],
    rounds: int,
    settings: Settings,
    progress: Callable[[str], None],
) -> Results:
    """Run every job on every loop, ``rounds`` times, interleaved; never raises for one failure."""
    metrics = [metric for job in jobs for metric in job.metrics]
    all_loops = list(loops)
    for job in jobs:
        all_loops += [extra for extra in job.extra_loops if extra not in all_loops]
    results = Results(metrics, all_loops, rounds, settings)
    total = sum(len(loops_for(job, loops, 0)) for job in jobs) * rounds
    started = time.monotonic()
    done = 0
    for round_index in range(rounds):
        for job in jobs:
            for loop in loops_for(job, loops, round_index):
                done += 1
                where = f"round {round_index + 1}/{rounds}  {job.label:<30} {loop:<10}"
                prefix = f"[{done:>3}/{total}] {where}"
                line = run_one(job, loop, settings, results)
                elapsed = time.monotonic() - started
                remaining = elapsed / done * (total - done)
                progress(f"{prefix} {line}  (~{remaining:.0f} s left)")
    results.seconds = time.monotonic() - started
    return results


def run_one(job: Job, loop: str, settings: Settings, results: Results) -> str:
    """Measure ``job`` on ``loop`` once and file the outcome; a short description of it."""
    try:
        measurement = job.run(loop, settings)
    except BenchError as exc:
        message = str(exc)
    except Exception as exc:  # a bug in the harness or a loop: record it, keep going
        message = f"{type(exc).__name__}: {exc}"
        traceback.print_exc(limit=-3)
    else:
        for metric in job.metrics:
            cell = results.cell(metric.key, loop)
            if metric.key in measurement.values:
                cell.samples.append(measurement.values[metric.key])
                cell.notes.append(measurement.notes)
        return describe(job, measurement)
    for metric in job.metrics:
        results.cell(metric.key, loop).errors.append(message)
    return f"ERROR {message}"
