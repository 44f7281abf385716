"""Cancellation fuzz: seeded random programs, run on asyncio and on slipstream, must agree.

A program is a tree of nodes: a run of ``sleep(0)`` steps (which may cancel one of
the program's tasks at a chosen step), a raise, ``gather`` (with or without
``return_exceptions``), a ``TaskGroup``, ``shield``, ``asyncio.timeout`` (already
expired or far away) and socket I/O.  What every node ended with (its value, the
type of its exception, or cancelled), how the whole program ended, and what it
left behind (pending tasks, open descriptors) are compared between the loops.
Everything is driven by loop turns, not by wall-clock time, so a program's
outcome depends only on the loop's scheduling order.
"""

from __future__ import annotations

import asyncio
import random
import socket
from dataclasses import dataclass, field
from typing import Any

from .common import Figures, LoopFactory, open_fds, run_on

Node = tuple[Any, ...]


def build(rng: random.Random, depth: int) -> Node:
    """A random program tree of at most ``depth`` levels."""
    leaf = depth <= 0 or rng.random() < 0.3
    kind = rng.choice(
        ["steps", "steps", "raise", "io"]
        if leaf
        else ["gather", "group", "shield", "timeout", "steps"]
    )
    if kind == "steps":
        cancel_at = rng.randrange(8) if rng.random() < 0.3 else -1
        return ("steps", rng.randrange(1, 8), cancel_at, rng.randrange(1 << 16))
    if kind == "raise":
        return ("raise", rng.randrange(4))
    if kind == "io":
        return ("io", rng.choice([1, 100, 70_000]))
    if kind in ("gather", "group"):
        children = tuple(build(rng, depth - 1) for _ in range(rng.randrange(1, 4)))
        return (kind, children, rng.random() < 0.5)
    if kind == "shield":
        return ("shield", build(rng, depth - 1))
    return ("timeout", build(rng, depth - 1), rng.random() < 0.5)


@dataclass
class Run:
    """One execution: the outcome of every node by its path, and the tasks it made."""

    outcomes: dict[str, str] = field(default_factory=dict)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    def spawn(self, node: Node, path: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(self.execute(node, path))
        self.tasks.append(task)
        return task

    async def execute(self, node: Node, path: str) -> Any:
        try:
            value = await self._body(node, path)
        except asyncio.CancelledError:
            self.outcomes[path] = "cancelled"
            raise
        except BaseException as exc:
            self.outcomes[path] = f"raised {describe(exc)}"
            raise
        self.outcomes[path] = f"returned {value!r}"
        return value

    async def _body(self, node: Node, path: str) -> Any:
        kind = node[0]
        if kind == "steps":
            _, count, cancel_at, target = node
            for step in range(count):
                if step == cancel_at and self.tasks:
                    self.tasks[target % len(self.tasks)].cancel()
                await asyncio.sleep(0)
            return count
        if kind == "raise":
            await asyncio.sleep(0)
            raise (ValueError, KeyError, RuntimeError, OSError)[node[1]](path)
        if kind == "io":
            return await exchange(node[1])
        if kind == "gather":
            children = [self.spawn(child, f"{path}.{i}") for i, child in enumerate(node[1])]
            return await asyncio.gather(*children, return_exceptions=node[2])
        if kind == "group":
            async with asyncio.TaskGroup() as group:
                children = [
                    group.create_task(self.execute(child, f"{path}.{i}"))
                    for i, child in enumerate(node[1])
                ]
                self.tasks.extend(children)
            return [child.result() for child in children]
        if kind == "shield":
            return await asyncio.shield(self.spawn(node[1], f"{path}.0"))
        async with asyncio.timeout(0 if node[2] else 3600):
            return await self.execute(node[1], f"{path}.0")


def describe(exc: BaseException) -> str:
    """An exception's type, and for a group the types inside it, in order."""
    if isinstance(exc, BaseExceptionGroup):
        return f"{type(exc).__name__}[{', '.join(describe(e) for e in exc.exceptions)}]"
    return type(exc).__name__


async def exchange(size: int) -> int:
    """Send ``size`` bytes over a socketpair with the loop's sock_* methods and read them back."""
    loop = asyncio.get_running_loop()
    left, right = socket.socketpair()
    try:
        left.setblocking(False)
        right.setblocking(False)
        await loop.sock_sendall(left, b"z" * size)
        got = 0
        while got < size:
            got += len(await loop.sock_recv(right, 65536))
        return got
    finally:
        left.close()
        right.close()


async def run_program(program: Node) -> dict[str, Any]:
    """Run ``program`` as a task; return what it did and what it left behind."""
    fds_before = open_fds()
    run = Run()
    main = run.spawn(program, "0")
    try:
        await main
        ending = "returned"
    except asyncio.CancelledError:
        ending = "cancelled"
    except BaseException as exc:
        ending = f"raised {describe(exc)}"
    # A task that failed with nobody awaiting it (a shielded child, say) would be logged
    # when collected; count them here instead, as part of what the program left behind.
    unretrieved = sum(
        1 for task in run.tasks if task.done() and not task.cancelled() and task.exception()
    )
    current = asyncio.current_task()
    left = [task for task in asyncio.all_tasks() if task is not current]
    for task in left:
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)
    return {
        "ending": ending,
        "outcomes": dict(sorted(run.outcomes.items())),
        "pending_tasks_left": len(left),
        "fds_left": open_fds() - fds_before,
        "failed_tasks": unretrieved,
    }


def check_seed(seed: int, reference: LoopFactory, candidate: LoopFactory) -> dict[str, Any]:
    """Run the program of ``seed`` on both loops; raise with the seed if they differ."""
    program = build(random.Random(seed), depth=4)
    expected = run_on(reference, run_program(program))
    got = run_on(candidate, run_program(program))
    if got != expected:
        raise AssertionError(
            f"cancellation fuzz seed {seed} differs from asyncio:\n"
            f"  program:  {program!r}\n  asyncio:  {expected!r}\n  this loop: {got!r}"
        )
    return got


def fuzz(seeds: range, reference: LoopFactory, candidate: LoopFactory) -> Figures:
    """Check every seed in ``seeds``; return how many programs, nodes and cancellations ran."""
    nodes = cancelled = 0
    endings: dict[str, int] = {}
    for seed in seeds:
        result = check_seed(seed, reference, candidate)
        nodes += len(result["outcomes"])
        cancelled += sum(o == "cancelled" for o in result["outcomes"].values())
        ending = result["ending"].split("[")[0]
        endings[ending] = endings.get(ending, 0) + 1
    return {
        "seeds": f"{seeds.start}..{seeds.stop - 1}",
        "programs": len(seeds),
        "nodes": nodes,
        "nodes_cancelled": cancelled,
        "endings": endings,
    }
