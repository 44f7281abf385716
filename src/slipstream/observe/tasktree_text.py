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
        by_id = {task.task_id: task for task in tree.tasks}
        for task in tree.tasks:
            stack = _innermost_first(task)
            if not task.awaited_by:
                lines.append(
                    _ps_row(
                        [str(tree.thread_id), hex(task.task_id), task.name, stack, "", "", "0x0"]
                    )
                )
            for awaiter in task.awaited_by:
                parent = by_id[awaiter.task_id]
                lines.append(
                    _ps_row(
                        [
                            str(tree.thread_id),
                            hex(task.task_id),
                            task.name,
                            stack,
                            _innermost_first(parent),
                            parent.name,
                            hex(parent.task_id),
                        ]
                    )
                )
    return "\n".join(lines) + "\n"


def render_pstree(trees: Sequence[TaskTree]) -> str:
    """Each root task with its coroutine stack (outermost first), the tasks it awaits nested
    under its innermost frame; ``AwaitCycleError`` if tasks await each other in a cycle.

    A task awaited by several tasks is printed under each of them.
    """
    lines: list[str] = []
    for tree in trees:
        children = _children_index(tree)
        _check_acyclic(tree, children)
        note = _snapshot_note(tree)
        if note:
            lines.append(note)
        if len(trees) > 1:
            lines.append(f"loop in thread {tree.thread_id} ({tree.loop}):")
        _tree_lines(tree.roots(), children, lines)
    return "\n".join(lines) + "\n" if lines else ""


def _children_index(tree: TaskTree) -> dict[int, list[TaskInfo]]:
    children: dict[int, list[TaskInfo]] = {task.task_id: [] for task in tree.tasks}
    for task in tree.tasks:  # tree order, so each list is in the tree's sibling order
        for awaiter in task.awaited_by:
            children[awaiter.task_id].append(task)
    return children


def _tree_lines(
    roots: Sequence[TaskInfo], children: dict[int, list[TaskInfo]], out: list[str]
) -> None:
    # Depth first with an explicit stack: a long chain of awaits must not hit the recursion
    # limit. Each entry: the task, the prefix of its line, whether it is the last sibling.
    pending = [(task, "", i == len(roots) - 1) for i, task in reversed(list(enumerate(roots)))]
    while pending:
        task, prefix, last = pending.pop()
        out.append(f"{prefix}{'└── ' if last else '├── '}(T) {task.name}")
        prefix += "    " if last else "│   "
        # The frames form a single chain, so each sits alone (└──) under the one before it.
        for frame in task.coroutine_stack:
            out.append(f"{prefix}└──  {frame}")
            prefix += "    "
        kids = children[task.task_id]
        last_index = len(kids) - 1
        pending.extend((kid, prefix, i == last_index) for i, kid in reversed(list(enumerate(kids))))


def _check_acyclic(tree: TaskTree, children: dict[int, list[TaskInfo]]) -> None:
    # Iterative depth-first search over awaiter -> awaited edges; `on_path` is the current
    # chain, so meeting one of its tasks again closes a cycle.
    done: set[int] = set()
    for start in tree.tasks:
        if start.task_id in done:
            continue
        on_path: list[int] = [start.task_id]
        iterators = [iter(children[start.task_id])]
        while iterators:
            child = next(iterators[-1], None)
            if child is None:
                done.add(on_path.pop())
                iterators.pop()
            elif child.task_id in on_path:
                cycle = [*on_path[on_path.index(child.task_id) :], child.task_id]
                raise AwaitCycleError([tree.task(i).name for i in cycle])
            elif child.task_id not in done:
                on_path.append(child.task_id)
                iterators.append(iter(children[child.task_id]))


def _innermost_first(task: TaskInfo) -> str:
    return " -> ".join(frame.function for frame in reversed(task.coroutine_stack))


def _ps_row(cells: list[str]) -> str:
    padded = [cell.ljust(width) for cell, (_, width) in zip(cells, PS_COLUMNS, strict=True)]
    return " ".join(padded).rstrip()


def _snapshot_note(tree: TaskTree) -> str:
    """One or two ``note:`` lines when the snapshot was not taken on the loop's thread, else ''."""
    if tree.source == "loop":
        return ""
    lines = [f"note: {tree.note or 'tasks were read from another thread'}"]
    if tree.loop_thread_stack:
        lines.append(f"note: the loop thread {tree.thread_id} is in {tree.loop_thread_stack[-1]}")
    return "\n".join(lines)
