"""The loop core's behaviour, checked against stock asyncio on every test."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


@pytest.fixture
def loop(loop_factory: LoopFactory) -> Any:
    lp = loop_factory()
    yield lp
    if not lp.is_closed():
        lp.run_until_complete(lp.shutdown_default_executor())
        lp.close()


def test_call_soon_runs_in_fifo_order(loop: asyncio.AbstractEventLoop) -> None:
    seen: list[int] = []
    for i in range(5):
        loop.call_soon(seen.append, i)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == [0, 1, 2, 3, 4]


def test_callbacks_scheduled_while_running_wait_for_next_turn(
    loop: asyncio.AbstractEventLoop,
) -> None:
    seen: list[str] = []

    def first() -> None:
        seen.append("first")
        loop.call_soon(seen.append, "scheduled-by-first")

    loop.call_soon(first)
    loop.call_soon(seen.append, "second")
    loop.call_soon(loop.stop)
    loop.run_forever()
    # stop() lets the current batch finish; the callback added during the
    # batch runs on the next run_forever().
    assert seen == ["first", "second"]
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == ["first", "second", "scheduled-by-first"]


def test_timers_fire_in_due_order_and_not_early(loop: asyncio.AbstractEventLoop) -> None:
    fired: list[tuple[str, float]] = []
    start = loop.time()

    def fire(name: str) -> None:
        fired.append((name, loop.time() - start))

    for name, delay in [("c", 0.03), ("a", 0.01), ("b", 0.02), ("a2", 0.01)]:
        loop.call_later(delay, fire, name)
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    assert [n for n, _ in fired] == ["a", "a2", "b", "c"]
    delays = {"a": 0.01, "a2": 0.01, "b": 0.02, "c": 0.03}
    for name, elapsed in fired:
        assert elapsed >= delays[name] - 0.001


def test_every_run_looks_at_pending_io_first(loop: asyncio.AbstractEventLoop) -> None:
    # A run of the loop right after another must still deliver I/O that is
    # already pending, even if all it has to do is finish a done future:
    # slipstream may skip a zero-timeout poll within a run, never on a run's
    # first turn.
    import socket

    left, right = socket.socketpair()
    seen: list[bytes] = []
    try:
        loop.add_reader(left.fileno(), lambda: seen.append(left.recv(100)))
        for round_number in range(20):
            loop.run_until_complete(asyncio.sleep(0))
            right.send(b"x")
            done = loop.create_future()
            done.set_result(None)
            loop.run_until_complete(done)
            assert len(seen) == round_number + 1, round_number
    finally:
        loop.remove_reader(left.fileno())
        left.close()
        right.close()


def test_cancelled_timer_does_not_fire(loop: asyncio.AbstractEventLoop) -> None:
    fired: list[int] = []
    handles = [loop.call_later(0.001 * i, fired.append, i) for i in range(300)]
    for h in handles[::2]:
        h.cancel()
    assert all(h.cancelled() for h in handles[::2])
    loop.run_until_complete(asyncio.sleep(0.35))
    assert fired == list(range(1, 300, 2))


def test_mass_cancellation_between_turns_keeps_live_timers(
    loop: asyncio.AbstractEventLoop,
) -> None:
    # Far more cancellations than live timers, all between two turns: the
    # loop may purge its heap while the timers are being cancelled, and the
    # live ones must still fire, in deadline order, exactly once.
    fired: list[int] = []
    base = loop.time() + 0.02

    def offset(i: int) -> float:
        return (i % 17) * 1e-4 + i * 1e-7

    handles = [loop.call_at(base + offset(i), fired.append, i) for i in range(3000)]
    live = [i for i in range(3000) if i % 10 == 0]
    for i, handle in enumerate(handles):
        if i % 10:
            handle.cancel()
            loop.call_later(10.0, fired.append, -1).cancel()
    loop.call_at(base + 0.01, loop.stop)
    loop.run_forever()
    assert fired == sorted(live, key=offset)


def test_cancelling_a_timer_from_a_finaliser_during_a_purge(
    loop: asyncio.AbstractEventLoop,
) -> None:
    # Dropping purged timers releases their contexts; a finaliser run by that
    # release may cancel another timer (and so reach the heap again).
    fired: list[str] = []
    var: contextvars.ContextVar[object] = contextvars.ContextVar("var")
    victim = loop.call_later(0.01, fired.append, "victim")

    class CancelsOnRelease:
        def __del__(self) -> None:
            victim.cancel()

    context = contextvars.Context()
    context.run(var.set, CancelsOnRelease())
    holder = loop.call_later(10.0, fired.append, "holder", context=context)
    del context
    holder.cancel()
    del holder
    for _ in range(500):
        loop.call_later(10.0, fired.append, "cancelled").cancel()
    loop.call_later(0.005, fired.append, "kept")
    loop.call_later(0.02, loop.stop)
    loop.run_forever()
    assert victim.cancelled()
    assert fired == ["kept"]


def test_timer_handle_api(loop: asyncio.AbstractEventLoop) -> None:
    when = loop.time() + 10
    h = loop.call_at(when, print)
    # slipstream's handles have asyncio's API and repr but are not its subclasses (compiled,
    # they are C types): check the class name and the API, not isinstance.
    assert type(h).__name__ == "TimerHandle"
    assert h.when() == when
    assert not h.cancelled()
    h.cancel()
    assert h.cancelled()
    assert "cancelled" in repr(h)


def test_callback_runs_in_given_context(loop: asyncio.AbstractEventLoop) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "inside")
    seen: list[str] = []
    loop.call_soon(lambda: seen.append(var.get()), context=ctx)
    loop.call_later(0, lambda: seen.append(var.get()), context=ctx)
    loop.run_until_complete(asyncio.sleep(0.01))
    assert seen == ["inside", "inside"]


def test_call_soon_threadsafe_wakes_a_blocked_loop(loop: asyncio.AbstractEventLoop) -> None:
    def from_thread() -> None:
        time.sleep(0.05)
        loop.call_soon_threadsafe(loop.stop)

    thread = threading.Thread(target=from_thread)
    started = time.monotonic()
    thread.start()
    loop.run_forever()  # nothing else scheduled: blocks in poll until woken
    thread.join()
    assert time.monotonic() - started < 2


def test_run_until_complete_returns_result_and_raises(loop: asyncio.AbstractEventLoop) -> None:
    async def ok() -> int:
        await asyncio.sleep(0)
        return 7

    async def bad() -> None:
        raise ValueError("boom")

    assert loop.run_until_complete(ok()) == 7
    with pytest.raises(ValueError, match="boom"):
        loop.run_until_complete(bad())


def test_run_until_complete_stopped_early(loop: asyncio.AbstractEventLoop) -> None:
    fut = loop.create_future()
    loop.call_soon(loop.stop)
    with pytest.raises(RuntimeError, match="Event loop stopped before Future completed"):
        loop.run_until_complete(fut)


def test_nested_run_is_refused(loop: asyncio.AbstractEventLoop) -> None:
    async def nested() -> None:
        coro = asyncio.sleep(0)
        try:
            with pytest.raises(RuntimeError, match="already running"):
                loop.run_until_complete(coro)
        finally:
            coro.close()

    loop.run_until_complete(nested())


def test_closed_loop_refuses_work(loop: asyncio.AbstractEventLoop) -> None:
    loop.close()
    assert loop.is_closed()
    loop.close()  # closing twice is allowed
    for attempt in (
        lambda: loop.call_soon(print),
        lambda: loop.call_later(1, print),
        lambda: loop.call_at(1, print),
        lambda: loop.call_soon_threadsafe(print),
        lambda: loop.run_forever(),
        lambda: loop.run_in_executor(None, print),
        lambda: loop.add_reader(0, print),
        lambda: loop.add_writer(1, print),
    ):
        with pytest.raises(RuntimeError, match="Event loop is closed"):
            attempt()
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.run_until_complete(coro)
    coro.close()
    assert loop.remove_reader(0) is False
    assert loop.remove_writer(1) is False


def test_close_running_loop_is_refused(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match="Cannot close a running event loop"):
            loop.close()

    loop.run_until_complete(main())


def test_bad_arguments_raise_like_asyncio(loop: asyncio.AbstractEventLoop) -> None:
    with pytest.raises(TypeError):
        loop.call_later(None, print)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        loop.call_at(None, print)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        loop.set_exception_handler(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        loop.set_task_factory(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        loop.set_default_executor(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Invalid file descriptor"):
        loop.add_reader(-1, print)
    with pytest.raises(ValueError, match="Invalid file object"):
        loop.add_reader(object(), print)  # type: ignore[arg-type]
    loop.set_debug(True)
    coro = asyncio.sleep(0)
    with pytest.raises(TypeError, match="coroutines cannot be used with call_soon"):
        loop.call_soon(coro)  # type: ignore[arg-type]
    coro.close()
    with pytest.raises(TypeError, match="a callable object was expected"):
        loop.call_soon(42)  # type: ignore[arg-type]


def test_exception_in_callback_reaches_handler(loop: asyncio.AbstractEventLoop) -> None:
    contexts: list[dict[str, Any]] = []

    def failing() -> None:
        raise ZeroDivisionError("in callback")

    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    loop.call_soon(failing)
    loop.run_until_complete(asyncio.sleep(0.01))
    assert len(contexts) == 1
    assert contexts[0]["message"].startswith("Exception in callback")
    assert isinstance(contexts[0]["exception"], ZeroDivisionError)
    assert type(contexts[0]["handle"]).__name__ == "Handle"  # see test_timer_handle_api


def test_default_handler_logs_on_asyncio_logger(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_exception_handler({"message": "custom message", "thing": 1})
    assert "custom message" in caplog.text
    assert "thing: 1" in caplog.text


def test_failing_exception_handler_falls_back_to_default(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(lp: Any, ctx: dict[str, Any]) -> None:
        raise RuntimeError("handler broke")

    loop.set_exception_handler(broken)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_exception_handler({"message": "original"})
    assert "Unhandled error in exception handler" in caplog.text


def test_slow_callback_warning_in_debug_mode(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01
    loop.call_soon(time.sleep, 0.03)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.run_until_complete(asyncio.sleep(0.05))
    assert "Executing" in caplog.text
    assert "took" in caplog.text


def test_run_in_executor_and_shutdown(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> int:
        return await loop.run_in_executor(None, sum, [1, 2, 3])

    assert loop.run_until_complete(main()) == 6
    loop.run_until_complete(loop.shutdown_default_executor())
    with pytest.raises(RuntimeError, match="Executor shutdown has been called"):
        loop.run_in_executor(None, print)


def test_shutdown_asyncgens_closes_generators(loop: asyncio.AbstractEventLoop) -> None:
    closed: list[bool] = []

    async def agen() -> Any:
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)

    async def main() -> Any:
        gen = agen()
        await gen.__anext__()
        return gen

    gen = loop.run_until_complete(main())
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert closed == [True]
    del gen


def test_reader_and_writer_callbacks(loop: asyncio.AbstractEventLoop) -> None:
    import socket

    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    got: list[bytes] = []
    writable = loop.create_future()

    def on_readable() -> None:
        got.append(a.recv(100))
        loop.remove_reader(a)

    def on_writable() -> None:
        loop.remove_writer(b)
        b.send(b"ping")
        writable.set_result(None)

    loop.add_reader(a, on_readable)
    loop.add_writer(b, on_writable)
    loop.run_until_complete(writable)
    loop.run_until_complete(asyncio.sleep(0.02))
    assert got == [b"ping"]
    assert loop.remove_reader(a) is False
    a.close()
    b.close()


def test_task_factory_and_names(loop: asyncio.AbstractEventLoop) -> None:
    made: list[str] = []

    def factory(lp: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        made.append("task")
        return asyncio.Task(coro, loop=lp, **kwargs)

    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory

    async def main() -> str:
        task = loop.create_task(asyncio.sleep(0), name="named")
        await task
        return task.get_name()

    assert loop.run_until_complete(main()) == "named"
    assert len(made) == 2


def test_every_abstract_loop_method_is_implemented() -> None:
    """No method of asyncio.AbstractEventLoop is left to raise NotImplementedError."""
    import slipstream

    inherited = [
        name
        for name, value in vars(asyncio.AbstractEventLoop).items()
        if callable(value)
        and not name.startswith("__")
        and getattr(slipstream.EventLoop, name) is value
    ]
    assert inherited == []


def test_a_subclass_override_of_a_hot_method_is_what_tasks_call(
    loop_factory: LoopFactory,
) -> None:
    # Tasks, futures and sleep() reach the loop through call_soon, get_debug,
    # call_later, create_future and create_task, which the compiled loop binds
    # per instance for speed: a subclass's overrides must still be called.
    probe = loop_factory()
    base: Any = type(probe)
    probe.close()
    called: list[str] = []

    class Recording(base):  # type: ignore[misc]
        def call_soon(self, callback: Any, *args: Any, context: Any = None) -> Any:
            called.append("call_soon")
            return super().call_soon(callback, *args, context=context)

        def get_debug(self) -> bool:
            called.append("get_debug")
            return bool(super().get_debug())

        def call_later(self, delay: float, callback: Any, *args: Any, context: Any = None) -> Any:
            called.append("call_later")
            return super().call_later(delay, callback, *args, context=context)

        def create_future(self) -> Any:
            called.append("create_future")
            return super().create_future()

        def create_task(self, coro: Any, **options: Any) -> Any:
            called.append("create_task")
            return super().create_task(coro, **options)

    async def main() -> None:
        await asyncio.sleep(0)
        await asyncio.create_task(asyncio.sleep(0.001))

    lp = Recording()
    try:
        lp.run_until_complete(main())
    finally:
        lp.close()
    assert {"call_soon", "get_debug", "call_later", "create_future", "create_task"} <= set(called)


def test_a_closed_loop_is_freed_without_the_cycle_collector(loop_factory: LoopFactory) -> None:
    import gc
    import weakref

    lp = loop_factory()
    lp.run_until_complete(asyncio.sleep(0))
    lp.close()
    with pytest.raises(RuntimeError, match="closed"):
        lp.call_soon(print)
    ref = weakref.ref(lp)
    gc.disable()
    try:
        del lp
        assert ref() is None
    finally:
        gc.enable()


def test_an_unclosed_loop_dropped_still_warns(loop_factory: LoopFactory) -> None:
    import gc

    lp = loop_factory()
    lp.run_until_complete(asyncio.sleep(0))
    with pytest.warns(ResourceWarning, match="unclosed event loop"):
        del lp
        gc.collect()


def test_a_task_made_in_debug_mode_records_its_creator_last(
    loop: asyncio.AbstractEventLoop,
) -> None:
    # As on asyncio: the last frame of the recorded stack is the line that
    # called create_task, not the loop's own method; outside debug mode
    # nothing is recorded.
    async def work() -> None:
        pass

    import sys

    for debug in (True, False):
        loop.set_debug(debug)
        line = sys._getframe().f_lineno + 1
        task = loop.create_task(work())
        recorded = task._source_traceback  # type: ignore[attr-defined]
        if debug:
            assert (recorded[-1].filename, recorded[-1].lineno) == (__file__, line)
        else:
            assert not recorded
        loop.run_until_complete(task)
    loop.set_debug(False)
