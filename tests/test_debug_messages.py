"""Debug mode speaks like asyncio's: the same programs give the same messages on both loops.

Each scenario runs on stock asyncio and on slipstream (both backends) with debug
mode on, collecting what the ``asyncio`` logger logs and what warnings are
issued.  The texts are compared after normalising what must differ: durations,
descriptor numbers, addresses, and the names of the loop and transport classes
(asyncio's ``_UnixSelectorEventLoop`` is slipstream's ``EventLoop``), and the
lines inside each loop's own source files.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

import slipstream

LoopFactory = Callable[[], asyncio.AbstractEventLoop]

_NORMALISE = [
    (re.compile(r"took \d+\.\d{3} seconds"), "took N seconds"),
    (re.compile(r"fd=\d+"), "fd=N"),
    (re.compile(r" at 0x[0-9a-f]+"), " at ADDRESS"),
    (re.compile(r"<_UnixSelectorEventLoop|<EventLoop"), "<LOOP"),
    (re.compile(r"<_SelectorSocketTransport|<SocketTransport"), "<TRANSPORT"),
]


# The loops' own source files: their frames in a printed stack are each loop's
# machinery (asyncio's _run_once and Handle._run, slipstream's scheduler), so
# they differ by nature; what the user reads is the frames of their code.
_LOOP_SOURCES = (os.path.dirname(asyncio.__file__), os.path.dirname(slipstream.__file__))
_FRAME = re.compile(r'^  File "(?P<file>[^"]+)", line \d+, in ')
# How many of the innermost user frames of a stack are compared: a stack is cut
# at a fixed depth (10, as asyncio's), and the loops' own frames take a
# different share of it, so the oldest user frames shown differ.
_USER_FRAMES = 3


def normalise(text: str) -> str:
    for pattern, replacement in _NORMALISE:
        text = pattern.sub(replacement, text)
    return _user_frames_only(text)


def _user_frames_only(text: str) -> str:
    """``text`` with each stack's loop frames dropped and its innermost user frames kept."""
    out: list[str] = []
    frames: list[list[str]] = []  # the current stack; a loop frame is an empty entry

    def flush() -> None:
        user = [lines for lines in frames if lines]
        for lines in user[-_USER_FRAMES:]:
            out.extend(lines)
        frames.clear()

    for line in text.splitlines():
        frame = _FRAME.match(line)
        if frame is not None:
            frames.append([] if frame["file"].startswith(_LOOP_SOURCES) else [line])
        elif frames and line.startswith("    "):
            if frames[-1]:
                frames[-1].append(line)  # the source line of a user frame
        else:
            flush()
            out.append(line)
    flush()
    return "\n".join(out)


class Collected:
    """The ``asyncio`` log records and the warnings a scenario produced, as text."""

    def __init__(self) -> None:
        self.logs: list[str] = []
        self.warnings: list[str] = []


class _ListHandler(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(normalise(record.getMessage()))


@contextmanager
def collecting() -> Iterator[Collected]:
    collected = Collected()
    handler = _ListHandler(collected.logs)
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield collected
            gc.collect()
        collected.warnings = [
            f"{w.category.__name__}: {normalise(str(w.message))}" for w in caught
        ]
    finally:
        logger.removeHandler(handler)


def debug_loop(loop_factory: LoopFactory) -> asyncio.AbstractEventLoop:
    loop = loop_factory()
    loop.set_debug(True)
    loop.slow_callback_duration = 0.05
    return loop


async def _slow_step() -> None:
    time.sleep(0.07)


def scenario_slow_task_step(loop_factory: LoopFactory) -> Collected:
    with collecting() as collected:
        loop = debug_loop(loop_factory)
        try:
            loop.run_until_complete(loop.create_task(_slow_step(), name="slow-one"))
        finally:
            loop.close()
    return collected


def scenario_slow_callback(loop_factory: LoopFactory) -> Collected:
    with collecting() as collected:
        loop = debug_loop(loop_factory)
        try:
            loop.call_soon(time.sleep, 0.06)
            loop.run_until_complete(asyncio.sleep(0.01))
        finally:
            loop.close()
    return collected


async def _failing() -> None:
    raise ValueError("nobody looks at this")


def scenario_exception_never_retrieved(loop_factory: LoopFactory) -> Collected:
    with collecting() as collected:
        loop = debug_loop(loop_factory)
        try:
            task = loop.create_task(_failing(), name="failer")
            loop.run_until_complete(asyncio.sleep(0.01))
            del task
            gc.collect()
        finally:
            loop.close()
    return collected


async def _never_awaited() -> None:
    pass


async def _drop_a_coroutine() -> None:
    _never_awaited()  # type: ignore[unused-coroutine]  # dropped: never awaited


def scenario_coroutine_never_awaited(loop_factory: LoopFactory) -> Collected:
    with collecting() as collected:
        loop = debug_loop(loop_factory)
        try:
            loop.run_until_complete(_drop_a_coroutine())
            gc.collect()
        finally:
            loop.close()
    return collected


def scenario_unclosed_transport(loop_factory: LoopFactory) -> Collected:
    with collecting() as collected:
        loop = debug_loop(loop_factory)
        ours, theirs = socket.socketpair()
        try:

            async def connect() -> asyncio.BaseTransport:
                transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
                return transport

            transport = loop.run_until_complete(connect())
            del transport
            gc.collect()
        finally:
            theirs.close()
            loop.close()
    return collected


def scenario_unclosed_loop(loop_factory: LoopFactory) -> Collected:
    with collecting() as collected:
        loop = loop_factory()
        loop.set_debug(True)
        del loop
        gc.collect()
    return collected


SCENARIOS = {
    name.removeprefix("scenario_"): function
    for name, function in globals().items()
    if name.startswith("scenario_")
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_debug_messages_match_asyncio(loop_factory: LoopFactory, name: str) -> None:
    # Both from this one line, so the "created at" stacks they print agree.
    expected, got = (SCENARIOS[name](f) for f in (asyncio.SelectorEventLoop, loop_factory))
    assert expected.logs or expected.warnings, "the scenario must produce a message"
    assert got.logs == expected.logs
    assert got.warnings == expected.warnings


def test_slow_task_step_names_the_task(loop_factory: LoopFactory) -> None:
    got = scenario_slow_task_step(loop_factory)
    assert len(got.logs) == 1
    assert got.logs[0].startswith("Executing <Task finished name='slow-one' coro=<_slow_step()")
    assert got.logs[0].endswith("took N seconds")
    assert "TaskStepMethWrapper" not in got.logs[0]
