"""Text views of :class:`~slipstream.observe.tasktree.TaskTree`, shaped like CPython 3.14's
``python -m asyncio ps`` (a table, one row per task and awaiter) and ``pstree`` (a tree of
tasks, each under the innermost frame of the task that awaits it)."""

from __future__ import annotations

from collections.abc import Sequence

from .tasktree import TaskInfo, TaskTree

PS_COLUMNS = (
    ("tid", 10),
    ("task id", 20),
    ("task name", 20),
    ("coroutine stack", 50),
    ("awaiter chain", 50),
    ("awaiter name", 15),
    ("awaiter id", 15),
)


class AwaitCycleError(ValueError):
    """The await graph has a cycle, so it is not a tree; ``cycle`` names the tasks on it."""

    def __init__(self, cycle: list[str]) -> None:
        super().__init__("await graph contains a cycle: " + " → ".join(cycle))
        self.cycle = cycle


def render_ps(trees: Sequence[TaskTree]) -> str:
    """A table of every pending task, one row per (task, awaiter); cycles are shown as well.

    ``coroutine stack`` and ``awaiter chain`` list function names innermost first, as
    ``python -m asyncio ps`` does; a task nothing awaits has awaiter id ``0x0``.
    """
    lines = [_snapshot_note(tree) for tree in trees if _snapshot_note(tree)]
    lines.append(_ps_row([title for title, _ in PS_COLUMNS]))
    lines.append("-" * (sum(width + 1 for _, width in PS_COLUMNS) + 4))
    for tree in trees:
        for task in tree.tasks:
            stack = _innermost_first(task)
            if not task.awaited_by:
                lines.append(_ps_row([str(tree.thread_id), hex(task.task_id), task.name, stack,
                                      "", "", "0x0"]))
            for awaiter in task.awaited_by:
                parent = tree.task(awaiter.task_id)
                lines.append(_ps_row([str(tree.thread_id), hex(task.task_id), task.name, stack,
                                      _innermost_first(parent), parent.name, hex(parent.task_id)]))
    return "\n".join(lines) + "\n"


def render_pstree(trees: Sequence[TaskTree]) -> str:
    """Each root task with its coroutine stack (outermost first), the tasks it awaits nested
    under its innermost frame; ``AwaitCycleError`` if tasks await each other in a cycle."""
    lines: list[str] = []
    for tree in trees:
        _check_acyclic(tree)
        note = _snapshot_note(tree)
        if note:
            lines.append(note)
        if len(trees) > 1:
            lines.append(f"loop in thread {tree.thread_id} ({tree.loop}):")
        roots = tree.roots()
        for index, root in enumerate(roots):
            _tree_lines(tree, root, "", index == len(roots) - 1, lines)
    return "\n".join(lines) + "\n" if lines else ""


def _tree_lines(tree: TaskTree, task: TaskInfo, prefix: str, last: bool, out: list[str]) -> None:
    out.append(f"{prefix}{'└── ' if last else '├── '}(T) {task.name}")
    prefix += "    " if last else "│   "
    # The frames form a single chain, so each sits alone (└──) under the one before it.
    for frame in task.coroutine_stack:
        out.append(f"{prefix}└──  {frame}")
        prefix += "    "
    children = tree.children(task.task_id)
    for index, child in enumerate(children):
        _tree_lines(tree, child, prefix, index == len(children) - 1, out)


def _check_acyclic(tree: TaskTree) -> None:
    # Depth-first over awaiter -> awaited edges, colouring the path being walked.
    on_path: list[int] = []
    done: set[int] = set()

    def walk(task_id: int) -> None:
        if task_id in done:
            return
        if task_id in on_path:
            cycle = [*on_path[on_path.index(task_id) :], task_id]
            raise AwaitCycleError([tree.task(i).name for i in cycle])
        on_path.append(task_id)
        for child in tree.children(task_id):
            walk(child.task_id)
        on_path.pop()
        done.add(task_id)

    for task in tree.tasks:
        walk(task.task_id)


def _innermost_first(task: TaskInfo) -> str:
    return " -> ".join(frame.function for frame in reversed(task.coroutine_stack))


def _ps_row(cells: list[str]) -> str:
    padded = [cell.ljust(width) for cell, (_, width) in zip(cells, PS_COLUMNS, strict=True)]
    return " ".join(padded).rstrip()


def _snapshot_note(tree: TaskTree) -> str:
    """Two lines when the snapshot was not taken on the loop's thread, else ''."""
    if tree.source == "loop":
        return ""
    where = tree.loop_thread_stack[-1] if tree.loop_thread_stack else None
    return (
        f"note: {tree.note or 'the loop did not answer'}; tasks were read from another thread "
        "while the loop ran on\n"
        f"note: the loop thread {tree.thread_id} is in {where if where else 'an unknown place'}"
    )
