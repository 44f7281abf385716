"""Signal handlers: the same behaviour, errors and counts as asyncio's loop.

About counting: the kernel keeps one pending instance of a standard signal,
so signals sent faster than they are delivered may merge.  ``os.kill`` of an
unblocked signal to our own (single-threaded) process delivers it before
``kill`` returns, so each ``kill`` here is one delivery, and CPython writes one
byte per delivery to the wake-up descriptor.  The tests below keep every burst
small enough for asyncio's wake-up socket (about 280 one-byte writes fit), so
the exact count is a sound assertion on both loops; the one test of a bigger
burst runs on slipstream only.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import signal
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

import slipstream

Run = Callable[[Coroutine[Any, Any, Any]], Any]

SIG = signal.SIGUSR1


async def _wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.001)


def test_handler_runs_with_args(run: Run) -> None:
    async def main() -> list[tuple[str, int]]:
        loop = asyncio.get_running_loop()
        seen: list[tuple[str, int]] = []
        loop.add_signal_handler(SIG, lambda a, b: seen.append((a, b)), "x", 1)
        os.kill(os.getpid(), SIG)
        await _wait_for(lambda: bool(seen))
        assert loop.remove_signal_handler(SIG)
        return seen

    assert run(main()) == [("x", 1)]


def test_signal_storm_with_handshake(run: Run) -> None:
    """1,000 signals, each one sent only after the previous one was handled."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        count = 0
        handled = asyncio.Event()

        def on_signal() -> None:
            nonlocal count
            count += 1
            handled.set()

        loop.add_signal_handler(SIG, on_signal)
        try:
            for _ in range(1000):
                handled.clear()
                os.kill(os.getpid(), SIG)
                await asyncio.wait_for(handled.wait(), 5)
        finally:
            loop.remove_signal_handler(SIG)
        return count

    assert run(main()) == 1000


def test_signal_storm_in_bursts(run: Run) -> None:
    """1,000 signals in bursts of 100 with no handshake in between: all counted."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        count = 0

        def on_signal() -> None:
            nonlocal count
            count += 1

        loop.add_signal_handler(SIG, on_signal)
        try:
            for burst in range(1, 11):
                for _ in range(100):
                    os.kill(os.getpid(), SIG)
                await _wait_for(lambda burst=burst: count >= burst * 100)  # type: ignore[misc]
            await asyncio.sleep(0.01)
        finally:
            loop.remove_signal_handler(SIG)
        return count

    assert run(main()) == 1000


def test_one_big_burst_is_counted_exactly() -> None:
    """slipstream's wake-up pipe holds 64 KiB of signal numbers (asyncio's socket ~280)."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        count = 0

        def on_signal() -> None:
            nonlocal count
            count += 1

        loop.add_signal_handler(SIG, on_signal)
        try:
            for _ in range(5000):
                os.kill(os.getpid(), SIG)
            await _wait_for(lambda: count >= 5000)
            await asyncio.sleep(0.01)
        finally:
            loop.remove_signal_handler(SIG)
        return count

    assert slipstream.run(main()) == 5000


def test_two_signals_each_to_its_handler(run: Run) -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        seen: list[str] = []
        loop.add_signal_handler(signal.SIGUSR1, seen.append, "usr1")
        loop.add_signal_handler(signal.SIGUSR2, seen.append, "usr2")
        try:
            os.kill(os.getpid(), signal.SIGUSR1)
            os.kill(os.getpid(), signal.SIGUSR2)
            os.kill(os.getpid(), signal.SIGUSR1)
            await _wait_for(lambda: len(seen) == 3)
        finally:
            loop.remove_signal_handler(signal.SIGUSR1)
            loop.remove_signal_handler(signal.SIGUSR2)
        return seen

    assert run(main()) == ["usr1", "usr2", "usr1"]


def test_handler_runs_in_context_of_add(run: Run) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        seen: list[str] = []
        var.set("at add")
        loop.add_signal_handler(SIG, lambda: seen.append(var.get()))
        var.set("later")
        os.kill(os.getpid(), SIG)
        await _wait_for(lambda: bool(seen))
        loop.remove_signal_handler(SIG)
        return seen

    assert run(main()) == ["at add"]


def test_replacing_a_handler(run: Run) -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        seen: list[str] = []
        loop.add_signal_handler(SIG, seen.append, "first")
        loop.add_signal_handler(SIG, seen.append, "second")
        os.kill(os.getpid(), SIG)
        await _wait_for(lambda: bool(seen))
        loop.remove_signal_handler(SIG)
        return seen

    assert run(main()) == ["second"]


def _error(func: Callable[[], object]) -> tuple[type[BaseException], str]:
    with pytest.raises(Exception) as info:
        func()
    return type(info.value), str(info.value)


def test_argument_errors_match_asyncio(run: Run) -> None:
    async def coro_func() -> None:
        pass

    async def main() -> list[tuple[type[BaseException], str]]:
        loop = asyncio.get_running_loop()
        coro = coro_func()
        try:
            return [
                _error(lambda: loop.add_signal_handler(SIG, coro_func)),
                _error(lambda: loop.add_signal_handler(SIG, coro)),  # type: ignore[arg-type]
                _error(lambda: loop.add_signal_handler("x", print)),  # type: ignore[arg-type]
                _error(lambda: loop.add_signal_handler(0, print)),
                _error(lambda: loop.add_signal_handler(signal.NSIG + 1, print)),
                _error(lambda: loop.add_signal_handler(signal.SIGKILL, print)),
                _error(lambda: loop.add_signal_handler(signal.SIGSTOP, print)),
                _error(lambda: loop.remove_signal_handler("x")),  # type: ignore[arg-type]
                _error(lambda: loop.remove_signal_handler(0)),
            ]
        finally:
            coro.close()

    assert run(main()) == [
        (TypeError, "coroutines cannot be used with add_signal_handler()"),
        (TypeError, "coroutines cannot be used with add_signal_handler()"),
        (TypeError, "sig must be an int, not 'x'"),
        (ValueError, "invalid signal number 0"),
        (ValueError, f"invalid signal number {signal.NSIG + 1}"),
        (RuntimeError, f"sig {int(signal.SIGKILL)} cannot be caught"),
        (RuntimeError, f"sig {int(signal.SIGSTOP)} cannot be caught"),
        (TypeError, "sig must be an int, not 'x'"),
        (ValueError, "invalid signal number 0"),
    ]


def test_uncatchable_signal_leaves_no_state(run: Run) -> None:
    async def main() -> bool:
        loop = asyncio.get_running_loop()
        with pytest.raises(RuntimeError):
            loop.add_signal_handler(signal.SIGKILL, print)
        return loop.remove_signal_handler(signal.SIGKILL)

    assert run(main()) is False
    assert signal.set_wakeup_fd(-1) == -1


def test_remove_restores_default_dispositions(run: Run) -> None:
    async def main() -> tuple[bool, bool, bool]:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(SIG, print)
        loop.add_signal_handler(signal.SIGINT, print)
        assert signal.getsignal(SIG) not in (signal.SIG_DFL, signal.SIG_IGN)
        removed = loop.remove_signal_handler(SIG), loop.remove_signal_handler(signal.SIGINT)
        return removed[0], removed[1], loop.remove_signal_handler(SIG)

    assert run(main()) == (True, True, False)
    assert signal.getsignal(SIG) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.set_wakeup_fd(-1) == -1  # cleared once the last handler went


def test_closing_the_loop_removes_handlers(loop_factory: Callable[[], Any]) -> None:
    loop = loop_factory()
    try:
        loop.add_signal_handler(SIG, print)
        loop.add_signal_handler(signal.SIGUSR2, print)
    finally:
        loop.close()
    assert signal.getsignal(SIG) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL
    assert signal.set_wakeup_fd(-1) == -1
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.add_signal_handler(SIG, print)


def test_only_the_main_thread(loop_factory: Callable[[], Any]) -> None:
    errors: list[tuple[type[BaseException], str]] = []

    def in_thread() -> None:
        loop = loop_factory()
        try:
            errors.append(_error(lambda: loop.add_signal_handler(SIG, print)))
        finally:
            loop.close()

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert [kind for kind, _ in errors] == [RuntimeError]
    assert "main thread" in errors[0][1]
    assert signal.getsignal(SIG) == signal.SIG_DFL


def test_signal_wakes_a_blocked_loop(run: Run) -> None:
    """The loop sleeps in its poll with no timer due; only the signal can wake it."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        woke: asyncio.Future[float] = loop.create_future()
        loop.add_signal_handler(SIG, lambda: woke.set_result(loop.time()))
        timer = threading.Timer(0.1, os.kill, (os.getpid(), SIG))
        started = loop.time()
        timer.start()
        try:
            return await asyncio.wait_for(woke, 5) - started
        finally:
            timer.join()
            loop.remove_signal_handler(SIG)

    assert run(main()) < 2.0
