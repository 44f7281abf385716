"""Statistics over the rounds, and the run's outputs: text table, Markdown, JSON, PNG chart.

Every ratio is a *speed-up*: how many times better a loop is than another on
that row, whatever the unit — more requests per second, or fewer nanoseconds or
microseconds of CPU.  Above 1 is faster.
"""

from __future__ import annotations

import datetime
import importlib
import importlib.metadata
import json
import os
import platform
import statistics
from pathlib import Path
from typing import Any

from .loops import PEERS, REFERENCES
from .runner import Results, format_value

Row = dict[str, Any]


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for package in ("slipstream", "uvloop", "rloop"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "versions": versions,
    }


def speedup(value: float, reference: float, higher_is_better: bool) -> float:
    """How many times better ``value`` is than ``reference`` (above 1: better)."""
    if value <= 0 or reference <= 0:
        return float("nan")
    return value / reference if higher_is_better else reference / value


def summarise(results: Results) -> dict[str, Any]:
    """The JSON document of a run: machine, settings, and per row the statistics and ratios."""
    rows: list[Row] = []
    for metric in results.metrics:
        cells: dict[str, Any] = {}
        medians: dict[str, float] = {}
        for loop in results.loops:
            cell = results.cells.get((metric.key, loop))
            if cell is None:
                continue
            entry: dict[str, Any] = {"samples": cell.samples, "errors": cell.errors}
            if cell.samples:
                median = statistics.median(cell.samples)
                medians[loop] = median
                entry.update(median=median, min=min(cell.samples), max=max(cell.samples))
                for note in sorted({name for notes in cell.notes for name in notes}):
                    values = [notes[note] for notes in cell.notes if note in notes]
                    entry[f"{note}_median"] = statistics.median(values)
                    entry[f"{note}_max"] = max(values)
            cells[loop] = entry
        row: Row = {
            "key": metric.key,
            "group": metric.group,
            "label": metric.label,
            "unit": metric.unit,
            "higher_is_better": metric.higher_is_better,
            "loops": cells,
        }
        if "asyncio" in medians:
            row["speedup_vs_asyncio"] = {
                loop: speedup(median, medians["asyncio"], metric.higher_is_better)
                for loop, median in medians.items()
            }
        peers = {loop: medians[loop] for loop in PEERS if loop in medians}
        if peers:
            pick = max if metric.higher_is_better else min
            best = pick(peers, key=lambda loop: peers[loop])
            row["best_peer"] = best
            if "slipstream" in medians:
                row["slipstream_vs_best_peer"] = speedup(
                    medians["slipstream"], peers[best], metric.higher_is_better
                )
        rows.append(row)
    return {
        "format": "slipstream-bench/1",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "seconds": round(results.seconds, 1),
        "machine": machine(),
        "rounds": results.rounds,
        "settings": vars(results.settings),
        "loops": results.loops,
        "rows": rows,
    }


def write_json(document: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, allow_nan=True) + "\n")


def table(document: dict[str, Any], markdown: bool = False) -> str:
    """The result table: median [min–max] per loop, then slipstream's speed-ups.

    Cells of failed measurements hold a footnote number; the footnotes (one per
    distinct error) follow the table.
    """
    loops: list[str] = document["loops"]
    header = ["benchmark", "unit", *loops]
    if "slipstream" in loops:
        header += ["slipstream x asyncio", "slipstream x best peer"]
    notes: list[str] = []
    lines: list[list[str]] = []
    for row in document["rows"]:
        line = [row["label"], row["unit"]]
        for loop in loops:
            entry = row["loops"].get(loop)
            if entry is None:
                line.append("")
            else:
                text = "error"
                if "median" in entry:
                    low, high = format_value(entry["min"]), format_value(entry["max"])
                    text = f"{format_value(entry['median'])} [{low}-{high}]"
                if entry["errors"]:  # failed in every round, or (after a value) in some
                    message = f"{loop}: {entry['errors'][0]}"
                    if message not in notes:
                        notes.append(message)
                    text += f" ({notes.index(message) + 1})"
                line.append(text)
        if "slipstream" in loops:
            ratio = row.get("speedup_vs_asyncio", {}).get("slipstream")
            line.append(f"{ratio:.2f}x" if ratio is not None else "")
            best = row.get("slipstream_vs_best_peer")
            line.append(f"{best:.2f}x ({row['best_peer']})" if best is not None else "")
        lines.append(line)
    footer = [f"({number}) {note}" for number, note in enumerate(notes, 1)]
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += [
            "| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in lines
        ]
        return "\n".join(out + [""] + [note + "  " for note in footer])
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    rule = "  ".join("-" * width for width in widths)
    out = ["  ".join(cell.ljust(width) for cell, width in zip(header, widths, strict=True)), rule]
    out += [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in lines
    ]
    return "\n".join([*out, *footer])


def load_generator_note(document: dict[str, Any]) -> str | None:
    """Where the load generator came closest to a full core (above 90% it may limit req/s)."""
    worst, where = 0.0, ""
    for row in document["rows"]:
        for loop, entry in row["loops"].items():
            if entry.get("loadgen_cpu_max", 0.0) > worst:
                worst, where = entry["loadgen_cpu_max"], f"{row['label']} on {loop}"
    if not worst:
        return None
    verdict = "never the bottleneck" if worst < 0.9 else "req/s there may be the generator's limit"
    return f"load generator CPU: at most {worst:.0%} of its core ({where}; {verdict})"


def reference_notes(document: dict[str, Any]) -> list[str]:
    """Slipstream's server CPU per round trip over each reference server's, per row.

    The references bound what a loop can do: ``c-epoll`` is the kernel's share
    (no loop does less), ``py-epoll`` what Python adds at the least (no loop
    running Python per event does less).  Above 1 is that many times the floor.
    """
    notes = []
    for row in document["rows"]:
        cells = row["loops"]
        ours = cells.get("slipstream", {}).get("median")
        if row["unit"] != "µs/req" or ours is None:
            continue
        parts = [
            f"{ours / cells[name]['median']:.2f}x {name}"
            for name in REFERENCES
            if cells.get(name, {}).get("median")
        ]
        if parts:
            notes.append(f"{row['label']}: slipstream {format_value(ours)} µs = {', '.join(parts)}")
    return notes


def write_chart(document: dict[str, Any], path: Path) -> str | None:
    """A PNG of every loop's speed-up over asyncio, one panel per group; an error note or None."""
    try:
        # Imported by name: matplotlib is an optional dependency (the bench extra).
        matplotlib: Any = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        return "matplotlib is not installed: no chart (pip install matplotlib)"
    groups: dict[str, list[Row]] = {}
    for row in document["rows"]:
        if row.get("speedup_vs_asyncio"):
            groups.setdefault(row["group"], []).append(row)
    if not groups:
        return "no row has an asyncio baseline: no chart"
    loops = [loop for loop in document["loops"] if loop not in REFERENCES]
    figure, axes = plt.subplots(
        len(groups),
        1,
        figsize=(11, 1.2 + sum(0.5 * len(rows) + 0.6 for rows in groups.values())),
        gridspec_kw={"height_ratios": [len(rows) + 1 for rows in groups.values()]},
        squeeze=False,
    )
    bar = 0.8 / max(1, len(loops))
    for axis, (group, rows) in zip(axes[:, 0], groups.items(), strict=True):
        for index, loop in enumerate(loops):
            values = [row["speedup_vs_asyncio"].get(loop, 0.0) for row in rows]
            positions = [n + index * bar for n in range(len(rows))]
            axis.barh(positions, values, height=bar, label=loop)
        axis.set_yticks([n + bar * (len(loops) - 1) / 2 for n in range(len(rows))])
        axis.set_yticklabels([row["label"] for row in rows], fontsize=8)
        axis.invert_yaxis()
        axis.axvline(1.0, color="black", linewidth=0.8)
        axis.set_title(f"{group}: speed-up over asyncio (higher is better)", fontsize=9)
        axis.tick_params(axis="x", labelsize=8)
    axes[0, 0].legend(fontsize=8, loc="lower right")
    info = document["machine"]
    figure.suptitle(
        f"slipstream bench — {info['cpu_model']}, {info['cpus']} CPUs, Python {info['python']}, "
        f"{document['rounds']} rounds (medians)",
        fontsize=10,
    )
    figure.tight_layout(rect=(0, 0, 1, 0.985))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return None
