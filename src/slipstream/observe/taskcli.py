"""``python -m slipstream ps PID`` and ``python -m slipstream pstree PID``.

Print the tasks of another running process that opted in to inspection (see
:mod:`slipstream.observe.inspector`), shaped like CPython 3.14's ``python -m asyncio ps`` and
``pstree``. Exit status: 0, 1 when the process cannot be inspected (the reason on stderr), 2 for
a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys

from .inspector import InspectionError, fetch_task_trees
from .tasktree_text import AwaitCycleError, render_ps, render_pstree


def build_parser() -> argparse.ArgumentParser:
    """The ``ps`` / ``pstree`` command line."""
    parser = argparse.ArgumentParser(
        prog="python -m slipstream",
        description="Show the tasks of a running process that opted in to inspection "
        "(slipstream.run(..., inspect=True) or SLIPSTREAM_INSPECT=1).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, summary in (
        ("ps", "a table of the pending tasks of process PID"),
        ("pstree", "a tree of the pending tasks of process PID"),
    ):
        command = commands.add_parser(name, help=summary, description=summary)
        command.add_argument("pid", type=int, help="the process to inspect")
        command.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    return parser


def main(argv: list[str]) -> int:
    """Run ``ps`` or ``pstree`` (``argv`` starts with the command's name)."""
    args = build_parser().parse_args(argv)
    try:
        trees = fetch_task_trees(args.pid)
    except InspectionError as exc:
        print(f"python -m slipstream {args.command}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([tree.to_dict() for tree in trees], indent=1))
        return 0
    if not trees:
        print(f"process {args.pid} has no running loop to inspect", file=sys.stderr)
        return 1
    if args.command == "ps":
        sys.stdout.write(render_ps(trees))
        return 0
    try:
        sys.stdout.write(render_pstree(trees))
    except AwaitCycleError as exc:
        print("ERROR: the await graph contains a cycle, so it is not a tree", file=sys.stderr)
        print(f"cycle: {' → '.join(exc.cycle)}", file=sys.stderr)
        return 1
    return 0
