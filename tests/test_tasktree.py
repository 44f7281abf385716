"""``slipstream.dump_tasks()``: the tree of a loop's tasks, on asyncio's loop and on slipstream's.

The trees are built by real programs (a TaskGroup of workers, each awaiting a gather of
sub-tasks) and checked edge by edge, with each await point's line found in this file.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

import slipstream
from slipstream.observe.tasktree import Awaiter, CodeLocation, TaskInfo, TaskTree, dump_tasks
from slipstream.observe.tasktree_text import AwaitCycleError, render_ps, render_pstree

T = TypeVar("T")
Run = Callable[[Coroutine[Any, Any, T]], T]
HERE = str(Path(__file__).resolve())


def line_of(marker: str) -> int:
    """The line of this file that ends with the comment ``marker``."""
    for number, line in enumerate(Path(HERE).read_text().splitlines(), start=1):
        if line.rstrip().endswith(f"# {marker}"):
            return number
    raise AssertionError(marker)


async def leaf() -> None:
    await asyncio.sleep(3600)  # leaf-await


async def worker(n: int) -> None:
    leaves = [asyncio.create_task(leaf(), name=f"leaf-{n}.{i}") for i in range(2)]
    await asyncio.gather(*leaves)  # worker-await


async def three_levels() -> TaskTree:
    """main -> a TaskGroup of two workers -> each awaiting a gather of two leaves."""
    async with asyncio.TaskGroup() as tg:
        for n in range(2):
            tg.create_task(worker(n), name=f"worker-{n}")
        for _ in range(3):
            await asyncio.sleep(0)
        tree = dump_tasks()  # main-dump
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()
    return tree


def by_name(tree: TaskTree) -> dict[str, TaskInfo]:
    return {task.name: task for task in tree.tasks}


def test_three_level_tree(run: Run[TaskTree]) -> None:
    tree = run(three_levels())
    tasks = by_name(tree)
    main = next(t for t in tree.roots())
    assert [t.name for t in tree.roots()] == [main.name]
    assert main.state == "running" and main.waiting_on is None
    assert main.await_point == CodeLocation("three_levels", HERE, line_of("main-dump"))
    assert [t.name for t in tree.children(main.task_id)] == ["worker-0", "worker-1"]
    for n in range(2):
        work = tasks[f"worker-{n}"]
        assert work.awaited_by == (Awaiter(main.task_id, "taskgroup"),)
        assert work.coroutine_stack == (CodeLocation("worker", HERE, line_of("worker-await")),)
        assert work.waiting_on == "gather of 2"
        assert [t.name for t in tree.children(work.task_id)] == [f"leaf-{n}.0", f"leaf-{n}.1"]
        for i in range(2):
            leaf_task = tasks[f"leaf-{n}.{i}"]
            assert leaf_task.awaited_by == (Awaiter(work.task_id, "gather"),)
            assert leaf_task.coroutine_stack[0] == CodeLocation("leaf", HERE, line_of("leaf-await"))
            assert leaf_task.coroutine_stack[-1].function == "sleep"
            assert leaf_task.waiting_on is not None and "Future pending" in leaf_task.waiting_on
    # Tree order: each task right before the subtree of what it awaits.
    assert [t.name for t in tree.tasks][1:] == [
        "worker-0",
        "leaf-0.0",
        "leaf-0.1",
        "worker-1",
        "leaf-1.0",
        "leaf-1.1",
    ]


def test_task_awaiting_a_task_and_nested_gathers(run: Run[TaskTree]) -> None:
    async def main() -> TaskTree:
        inner = [asyncio.create_task(leaf(), name=f"g{i}") for i in range(3)]
        both = asyncio.gather(asyncio.gather(inner[0], inner[1]), inner[2])
        gatherer = asyncio.create_task(_await(both), name="gatherer")
        awaiter = asyncio.create_task(_await(gatherer), name="awaiter")
        await asyncio.sleep(0.01)
        tree = dump_tasks()
        awaiter.cancel()
        for task in inner:
            task.cancel()
        await asyncio.gather(awaiter, *inner, return_exceptions=True)
        return tree

    tree = run(main())
    tasks = by_name(tree)
    assert tasks["gatherer"].awaited_by == (Awaiter(tasks["awaiter"].task_id, "await"),)
    assert tasks["awaiter"].waiting_on == "task gatherer"
    for i in range(3):
        assert tasks[f"g{i}"].awaited_by == (Awaiter(tasks["gatherer"].task_id, "gather"),)
    assert tasks["gatherer"].coroutine_stack[0].function == "_await"


async def _await(awaitable: Any) -> Any:
    return await awaitable


def test_loop_that_is_not_running(loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
    loop = loop_factory()
    try:
        task = loop.create_task(leaf(), name="not-started")
        tree = dump_tasks(loop)
        (info,) = tree.tasks
        assert info.name == "not-started" and info.state == "pending"
        assert info.waiting_on is None and info.awaited_by == ()
        assert info.coroutine_stack == (CodeLocation("leaf", HERE, leaf.__code__.co_firstlineno),)
        task.cancel()
        loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
    finally:
        loop.close()


def test_no_running_loop_is_an_error_as_in_asyncio() -> None:
    with pytest.raises(RuntimeError, match="no running event loop"):
        asyncio.all_tasks()
    with pytest.raises(RuntimeError, match="no running event loop"):
        dump_tasks()


def test_dict_round_trip(run: Run[TaskTree]) -> None:
    tree = run(three_levels())
    assert TaskTree.from_dict(tree.to_dict()) == tree


def test_exported_from_the_package() -> None:
    assert slipstream.dump_tasks is dump_tasks


def test_pstree_shape(run: Run[TaskTree]) -> None:
    tree = run(three_levels())
    lines = render_pstree([tree]).splitlines()
    main = tree.roots()[0]
    assert lines[0] == f"└── (T) {main.name}"
    assert lines[1] == f"    └──  three_levels {HERE}:{line_of('main-dump')}"
    # Workers nest under main's innermost frame, leaves under each worker's.
    assert lines[2] == "        ├── (T) worker-0"
    assert lines[3] == f"        │   └──  worker {HERE}:{line_of('worker-await')}"
    assert lines[4] == "        │       ├── (T) leaf-0.0"
    assert lines[5] == f"        │       │   └──  leaf {HERE}:{line_of('leaf-await')}"
    assert lines[6].startswith("        │       │       └──  sleep ")
    assert lines[7] == "        │       └── (T) leaf-0.1"
    assert lines[10] == "        └── (T) worker-1"
    assert len(lines) == 18


def test_ps_table(run: Run[TaskTree]) -> None:
    tree = run(three_levels())
    header, rule, *rows = render_ps([tree]).splitlines()
    assert header.split()[:6] == ["tid", "task", "id", "task", "name", "coroutine"]
    assert set(rule) == {"-"}
    cells = {row[31:52].strip(): row for row in rows}
    assert len(rows) == 7 and set(cells) == {t.name for t in tree.tasks}
    main = tree.roots()[0]
    assert cells[main.name].split()[-1] == "0x0"
    tasks = by_name(tree)
    leaf_row = cells["leaf-1.0"]
    assert leaf_row.split()[:2] == [str(tree.thread_id), hex(tasks["leaf-1.0"].task_id)]
    assert leaf_row[52:103].strip() == "sleep -> leaf"
    assert leaf_row[103:154].strip() == "worker"
    assert leaf_row.split()[-2:] == ["worker-1", hex(tasks["worker-1"].task_id)]
    assert cells["worker-0"][103:154].strip() == "three_levels"  # main runs its body


def test_pstree_refuses_a_cycle() -> None:
    def task(task_id: int, name: str, awaiter: int) -> TaskInfo:
        return TaskInfo(task_id, name, "pending", (), None, (Awaiter(awaiter, "await"),))

    tree = TaskTree(1, 1, "loop", "loop", (task(1, "a", 2), task(2, "b", 1)))
    with pytest.raises(AwaitCycleError) as caught:
        render_pstree([tree])
    assert caught.value.cycle in (["a", "b", "a"], ["b", "a", "b"])
    assert len(render_ps([tree]).splitlines()) == 4  # ps shows every task regardless


def test_a_chain_longer_than_the_recursion_limit(run: Run[TaskTree]) -> None:
    depth = 1500

    async def main() -> TaskTree:
        bottom = asyncio.create_task(leaf(), name="chain-0")
        chain = [bottom]
        for i in range(1, depth):
            chain.append(asyncio.create_task(_await(chain[-1]), name=f"chain-{i}"))
        await asyncio.sleep(0.01)
        tree = dump_tasks()
        bottom.cancel()
        await asyncio.gather(*chain, return_exceptions=True)
        return tree

    tree = run(main())
    names = [t.name for t in tree.tasks]
    assert names[1:3] == [f"chain-{depth - 1}", f"chain-{depth - 2}"] and names[-1] == "chain-0"
    lines = render_pstree([tree]).splitlines()
    # Task-1 (one frame), then per chain task a task line and its frame(s); the bottom sleeps.
    assert sum("(T) chain-" in line for line in lines) == depth
    assert lines[-1].lstrip().startswith("└──  sleep ")


def test_a_task_awaited_by_two_tasks(run: Run[TaskTree]) -> None:
    async def main() -> TaskTree:
        shared = asyncio.create_task(leaf(), name="shared")
        first = asyncio.create_task(_await(shared), name="first")
        second = asyncio.create_task(_await(shared), name="second")
        await asyncio.sleep(0.01)
        tree = dump_tasks()
        shared.cancel()
        await asyncio.gather(first, second, return_exceptions=True)
        return tree

    tree = run(main())
    tasks = by_name(tree)
    assert {a.task_id for a in tasks["shared"].awaited_by} == {
        tasks["first"].task_id,
        tasks["second"].task_id,
    }
    assert [t.name for t in tree.tasks].count("shared") == 1
    assert render_pstree([tree]).count("(T) shared") == 2  # under each awaiter
    assert sum(row[31:52].strip() == "shared" for row in render_ps([tree]).splitlines()) == 2
