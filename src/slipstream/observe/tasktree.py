"""The tree of a loop's tasks: who awaits whom, and where each task is suspended.

:func:`dump_tasks` reads what Python 3.11–3.13 expose about pending tasks and returns a
:class:`TaskTree` of plain, immutable values (safe to keep, compare, send as JSON):

- a task's *coroutine stack* follows ``cr_await`` (``gi_yieldfrom`` for generator-based
  coroutines, ``ag_await`` for async generators) from ``task.get_coro()`` down to the object it
  is suspended on, with each frame's current line;
- *who awaits whom* comes from the future a task waits on, which asyncio keeps in the task's
  ``_fut_waiter`` (the only way these Pythons expose it; 3.14 added ``_asyncio_awaited_by``):
  a task awaiting another task, a task awaiting a ``gather()`` (whose children asyncio keeps in
  ``_children``), and the task that owns a ``TaskGroup``: a member task carries the group's
  ``_on_task_done`` among its done callbacks (``_callbacks``), and the group knows its owner
  (``_parent_task``). Frames are never asked for their locals: on 3.11 and 3.12 that would
  copy them into a dict the frame keeps, holding the program's objects alive.

Those private names of asyncio are read in this module only, with ``getattr`` defaults, so a
Python that renames one loses an edge of the tree, never the snapshot. Nothing here writes to
a task, a future or a frame.

The snapshot works on any loop, asyncio's own included: it uses no part of slipstream's loop.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

AwaitKind = Literal["await", "gather", "taskgroup"]
"""How an awaiter waits on a task: ``await task``, ``await gather(...)`` or a TaskGroup it owns."""

SnapshotSource = Literal["loop", "inspector-thread"]
"""Where a snapshot was taken: in a callback on the loop's thread (consistent) or, when the loop
did not answer in time, from another thread while the loop ran on (see :class:`TaskTree`)."""

# A coroutine chain deeper than this is cut (a recursion of awaits must not hang the snapshot).
MAX_STACK_DEPTH = 256


@dataclass(frozen=True)
class CodeLocation:
    """One suspended frame of a coroutine stack: the function's qualified name and its line."""

    function: str
    filename: str
    lineno: int

    def __str__(self) -> str:
        return f"{self.function} {self.filename}:{self.lineno}"


@dataclass(frozen=True)
class Awaiter:
    """A task that waits for another one, and how (see :data:`AwaitKind`)."""

    task_id: int
    kind: AwaitKind


@dataclass(frozen=True)
class TaskInfo:
    """One pending task.

    ``coroutine_stack`` runs from the task's own coroutine (outermost) to the innermost frame,
    the task's current await point. ``waiting_on`` describes what that frame is suspended on
    (a future, a task, a gather) or is None for a task that has not started or is running.
    """

    task_id: int
    name: str
    state: Literal["pending", "running"]
    coroutine_stack: tuple[CodeLocation, ...]
    waiting_on: str | None
    awaited_by: tuple[Awaiter, ...]

    @property
    def await_point(self) -> CodeLocation | None:
        """Where the task is suspended: the innermost frame of its coroutine stack."""
        return self.coroutine_stack[-1] if self.coroutine_stack else None


@dataclass(frozen=True)
class TaskTree:
    """The pending tasks of one loop, in tree order (roots first, each followed by its children).

    ``source`` says how the snapshot was taken. ``"inspector-thread"`` means the loop did not
    run the snapshot callback in time (a callback is blocking it), so the tasks were read from
    another thread while the loop thread ran on: a task may be mid-step, and
    ``loop_thread_stack`` holds where the loop thread was at that moment (innermost last).
    """

    pid: int
    thread_id: int
    loop: str
    source: SnapshotSource
    tasks: tuple[TaskInfo, ...]
    loop_thread_stack: tuple[CodeLocation, ...] = ()
    note: str = ""

    def task(self, task_id: int) -> TaskInfo:
        """The task with this id (``KeyError`` if it is not in the snapshot)."""
        for info in self.tasks:
            if info.task_id == task_id:
                return info
        raise KeyError(task_id)

    def children(self, task_id: int) -> tuple[TaskInfo, ...]:
        """The tasks awaited by ``task_id``, in the tree's order."""
        return tuple(t for t in self.tasks if any(a.task_id == task_id for a in t.awaited_by))

    def roots(self) -> tuple[TaskInfo, ...]:
        """The tasks no task in the snapshot awaits."""
        return tuple(t for t in self.tasks if not t.awaited_by)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (what the inspection socket sends)."""
        return {
            "pid": self.pid,
            "thread_id": self.thread_id,
            "loop": self.loop,
            "source": self.source,
            "note": self.note,
            "loop_thread_stack": [_location_to_list(loc) for loc in self.loop_thread_stack],
            "tasks": [
                {
                    "task_id": t.task_id,
                    "name": t.name,
                    "state": t.state,
                    "coroutine_stack": [_location_to_list(loc) for loc in t.coroutine_stack],
                    "waiting_on": t.waiting_on,
                    "awaited_by": [[a.task_id, a.kind] for a in t.awaited_by],
                }
                for t in self.tasks
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskTree:
        """The inverse of :meth:`to_dict`; ``KeyError``, ``TypeError`` or ``ValueError`` if
        ``data`` is malformed."""
        tasks = tuple(
            TaskInfo(
                task_id=int(t["task_id"]),
                name=str(t["name"]),
                state="running" if t["state"] == "running" else "pending",
                coroutine_stack=tuple(_location_from_list(x) for x in t["coroutine_stack"]),
                waiting_on=None if t["waiting_on"] is None else str(t["waiting_on"]),
                awaited_by=tuple(Awaiter(int(i), _await_kind(k)) for i, k in t["awaited_by"]),
            )
            for t in data["tasks"]
        )
        source: SnapshotSource = "loop" if data["source"] == "loop" else "inspector-thread"
        return cls(
            pid=int(data["pid"]),
            thread_id=int(data["thread_id"]),
            loop=str(data["loop"]),
            source=source,
            tasks=tasks,
            loop_thread_stack=tuple(_location_from_list(x) for x in data["loop_thread_stack"]),
            note=str(data["note"]),
        )


def dump_tasks(
    loop: asyncio.AbstractEventLoop | None = None,
    *,
    source: SnapshotSource = "loop",
    thread_id: int | None = None,
) -> TaskTree:
    """The tree of the pending tasks of ``loop`` (by default the running loop).

    Call it on the loop's thread (from a coroutine or a callback) for a consistent snapshot;
    without a running loop and no ``loop`` it raises ``RuntimeError``, as
    :func:`asyncio.all_tasks` does. ``source`` and ``thread_id`` are for a caller that reads
    another thread's loop (the inspection server): they are recorded in the result as given.
    """
    if loop is None:
        loop = asyncio.get_running_loop()
    tasks = _pending_tasks(loop)
    running = asyncio.current_task(loop)
    awaiters: dict[int, dict[int, AwaitKind]] = {id(task): {} for task in tasks}
    for task in tasks:
        for awaiter, awaited, kind in _await_edges(task):
            if id(awaited) in awaiters and id(awaiter) in awaiters and awaited is not awaiter:
                # One edge per pair, the first found: a TaskGroup member may be awaited too.
                awaiters[id(awaited)].setdefault(id(awaiter), kind)
    infos = []
    for task in tasks:
        stack, leaf = _coroutine_stack(task.get_coro())
        is_running = task is running
        infos.append(
            TaskInfo(
                task_id=id(task),
                name=task.get_name(),
                state="running" if is_running else "pending",
                coroutine_stack=stack,
                waiting_on=None if is_running else _describe(getattr(task, "_fut_waiter", leaf)),
                awaited_by=tuple(Awaiter(i, k) for i, k in sorted(awaiters[id(task)].items())),
            )
        )
    return TaskTree(
        pid=os.getpid(),
        thread_id=threading.get_native_id() if thread_id is None else thread_id,
        loop=f"{type(loop).__module__}.{type(loop).__qualname__}",
        source=source,
        tasks=tuple(_tree_order(infos)),
    )


def _pending_tasks(loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[Any]]:
    # all_tasks() copies a WeakSet that another thread may be changing; it retries on
    # RuntimeError itself on 3.12+, not on 3.11 (the loop may be mid-step when the
    # inspection thread reads it).
    for _ in range(100):
        try:
            return sorted(asyncio.all_tasks(loop), key=id)
        except RuntimeError:
            continue
    return sorted(asyncio.all_tasks(loop), key=id)


def _coroutine_stack(coro: object) -> tuple[tuple[CodeLocation, ...], object]:
    """The chain of awaits under ``coro`` and the object at its bottom (what it waits on)."""
    locations: list[CodeLocation] = []
    current: object = coro
    while current is not None and len(locations) < MAX_STACK_DEPTH:
        links = _await_links(current)
        if links is None:
            break
        code, frame, awaited = links
        lineno = frame.f_lineno if frame is not None else code.co_firstlineno
        locations.append(CodeLocation(code.co_qualname, code.co_filename, lineno or 0))
        current = awaited
    return tuple(locations), current


def _await_links(obj: object) -> tuple[types.CodeType, types.FrameType | None, object] | None:
    """(code, frame, what it awaits) of a coroutine, generator or async generator; else None."""
    if isinstance(obj, types.CoroutineType):
        return obj.cr_code, obj.cr_frame, obj.cr_await
    if isinstance(obj, types.GeneratorType):
        return obj.gi_code, obj.gi_frame, obj.gi_yieldfrom
    if isinstance(obj, types.AsyncGeneratorType):
        return obj.ag_code, obj.ag_frame, obj.ag_await
    return None


Edge = tuple[asyncio.Future[Any], asyncio.Future[Any], AwaitKind]  # (awaiter, awaited, how)


def _await_edges(task: asyncio.Task[Any]) -> Iterator[Edge]:
    """The edges that ``task`` tells of: what it waits for, and the group that owns it."""
    waiter = getattr(task, "_fut_waiter", None)
    if isinstance(waiter, asyncio.Task):
        yield task, waiter, "await"
    elif isinstance(waiter, asyncio.Future):
        for child in _gather_members(waiter, depth=0):
            yield task, child, "gather"
    for callback, _context in getattr(task, "_callbacks", None) or ():
        group = getattr(callback, "__self__", None)
        owner = getattr(group, "_parent_task", None)
        if isinstance(group, asyncio.TaskGroup) and isinstance(owner, asyncio.Task):
            yield owner, task, "taskgroup"


def _gather_members(fut: asyncio.Future[Any], *, depth: int) -> Iterator[asyncio.Future[Any]]:
    # gather() of gathers nests: the tasks at the leaves are the ones the awaiter waits for.
    children = getattr(fut, "_children", None)
    if not isinstance(children, list) or depth > MAX_STACK_DEPTH:
        return
    for child in children:
        if isinstance(child, asyncio.Task):
            yield child
        elif isinstance(child, asyncio.Future):
            yield from _gather_members(child, depth=depth + 1)


def _describe(waited: object) -> str | None:
    """What a task waits on, in a few words: a task by name, a gather, a future's repr."""
    if waited is None:
        return None
    if isinstance(waited, asyncio.Task):
        return f"task {waited.get_name()}"
    children = getattr(waited, "_children", None)
    if isinstance(waited, asyncio.Future) and isinstance(children, list):
        return f"gather of {len(children)}"
    if isinstance(waited, asyncio.Future):
        # Not repr(): it formats every callback, which costs ~10 µs a task on the loop.
        return f"<{type(waited).__qualname__} {'cancelling' if waited.cancelled() else 'pending'}>"
    # A C Future's __await__ iterator names nothing; say what kind of object it is.
    return type(waited).__qualname__


_DIGITS = re.compile(r"(\d+)")


def name_order(name: str) -> tuple[str, ...]:
    """A sort key that puts ``Task-2`` before ``Task-10`` (digits compare as numbers)."""
    # split() with a group alternates text and digits, text first: pad the digits.
    return tuple(p.zfill(20) if i % 2 else p for i, p in enumerate(_DIGITS.split(name)))


def _tree_order(infos: list[TaskInfo]) -> Iterator[TaskInfo]:
    """Roots first, each followed depth-first by what it awaits; siblings in name order.

    A task awaited by several tasks comes once, after the first; tasks on a cycle of awaits
    (no root reaches them) come last.
    """
    by_name = sorted(infos, key=lambda t: name_order(t.name))
    children: dict[int, list[TaskInfo]] = {info.task_id: [] for info in by_name}
    for info in by_name:  # so each list of children is in name order too
        for awaiter in info.awaited_by:
            children[awaiter.task_id].append(info)
    emitted: set[int] = set()
    for start in [info for info in by_name if not info.awaited_by] + by_name:
        pending = [start]
        while pending:
            current = pending.pop()
            if current.task_id in emitted:
                continue
            emitted.add(current.task_id)
            yield current
            pending.extend(reversed(children[current.task_id]))


def _location_to_list(loc: CodeLocation) -> list[object]:
    return [loc.function, loc.filename, loc.lineno]


def _location_from_list(item: list[Any]) -> CodeLocation:
    function, filename, lineno = item
    return CodeLocation(str(function), str(filename), int(lineno))


def _await_kind(value: object) -> AwaitKind:
    if value == "gather":
        return "gather"
    if value == "taskgroup":
        return "taskgroup"
    return "await"
