"""The optional compiled core: which build is in use, SLIPSTREAM_PURE, and handle behaviour.

The rest of the suite runs on whichever build is in use (scripts/test.sh runs
it twice: compiled, then with SLIPSTREAM_PURE=1); these tests check the
selection itself and the parts of the handles' API that the compiled build
re-implements rather than inherits from asyncio.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import importlib.machinery
import json
import os
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Any

import pytest

import slipstream
import slipstream.core

CORE_DIR = Path(slipstream.core.__file__).parent
PACKAGE_DIR = CORE_DIR.parent
HOT_MODULES = ("handles", "scheduler")
# Every module setup.py compiles, by its name under slipstream.
COMPILED_MODULES = (
    "core.handles",
    "core.scheduler",
    "backends.socket_calls",
    "backends.ready",
    "backends.epoll",
    "transports.stream_engine",
)


def compiled_modules_present() -> bool:
    """Whether this interpreter has every compiled module beside its source."""
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    return all(
        any((PACKAGE_DIR / f"{name.replace('.', '/')}{suffix}").exists() for suffix in suffixes)
        for name in COMPILED_MODULES
    )


def probe(pure: str | None) -> dict[str, Any]:
    """Import slipstream in a fresh interpreter; report the build and module files in use."""
    env = dict(os.environ)
    env.pop("SLIPSTREAM_PURE", None)
    if pure is not None:
        env["SLIPSTREAM_PURE"] = pure
    code = (
        "import json, sys, slipstream, slipstream.backends as b\n"
        "loop = slipstream.new_event_loop()\n"
        "loop.call_soon(loop.stop); loop.run_forever(); loop.close()\n"
        f"names = {COMPILED_MODULES!r}\n"
        "print(json.dumps({'compiled': slipstream.compiled, 'io_compiled': b.COMPILED,"
        " 'files': [sys.modules['slipstream.' + n].__file__ for n in names]}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("value", ["1", "yes"])
def test_slipstream_pure_forces_the_sources(value: str) -> None:
    result = probe(value)
    assert result["compiled"] is False
    assert result["io_compiled"] is False
    assert all(path.endswith(".py") for path in result["files"])


@pytest.mark.parametrize("value", [None, "", "0"])
def test_default_uses_the_compiled_core_when_built(value: str | None) -> None:
    result = probe(value)
    if not compiled_modules_present():
        pytest.skip("no compiled core for this interpreter (no C compiler at install time?)")
    assert result["compiled"] is True
    assert result["io_compiled"] is True
    assert not any(path.endswith(".py") for path in result["files"])


def test_compiled_flag_matches_the_modules_in_use() -> None:
    import slipstream.accelerate
    import slipstream.backends

    files = [sys.modules[f"slipstream.core.{name}"].__file__ or "" for name in HOT_MODULES]
    assert slipstream.compiled is not any(path.endswith(".py") for path in files)
    assert slipstream.compiled is slipstream.core.COMPILED
    for name, compiled in slipstream.accelerate.COMPILED_MODULES.items():
        assert compiled is not (sys.modules[name].__file__ or "").endswith(".py"), name
    assert slipstream.backends.COMPILED is slipstream.accelerate.COMPILED_MODULES[
        "slipstream.backends.socket_calls"
    ]


def _callback(*args: Any) -> None:
    pass


@pytest.mark.parametrize("debug", [False, True])
def test_handle_reprs_have_asyncio_shape(loop_factory: Any, debug: bool) -> None:
    loop: asyncio.AbstractEventLoop = loop_factory()
    loop.set_debug(debug)
    # Python 3.13 shows a callback's arguments only in debug mode.
    shown = debug or sys.version_info < (3, 13)
    try:
        handle = loop.call_soon(_callback, 1, "two")
        timer = loop.call_at(loop.time() + 100, functools.partial(_callback, 1), 2)
        source = f" at {__file__}:"
        described = "_callback(1, 'two')" if shown else "_callback()"
        assert repr(handle).startswith("<Handle " + described + source)
        described = "_callback(1)(2)" if shown else "_callback()()"
        assert repr(timer).startswith(f"<TimerHandle when={timer.when()} {described}{source}")
        timer.cancel()
        handle.cancel()
        if not debug:  # debug mode keeps the repr from before the cancel
            assert repr(timer) == f"<TimerHandle cancelled when={timer.when()}>"
            assert repr(handle) == "<Handle cancelled>"
    finally:
        loop.close()


def test_timer_handles_order_and_compare_like_asyncio(loop_factory: Any) -> None:
    loop: asyncio.AbstractEventLoop = loop_factory()
    try:
        when = loop.time() + 100
        early = loop.call_at(when, _callback)
        late = loop.call_at(when + 1, _callback)
        twin = loop.call_at(when, _callback)
        assert early < late and late > early
        assert early <= twin and early >= twin
        assert early == twin and hash(early) == hash(twin)
        assert early != late
        for timer in (early, late, twin):
            timer.cancel()
    finally:
        loop.close()


def test_callback_arities_and_contexts(loop_factory: Any) -> None:
    # The run loop calls zero-, one- and many-argument callbacks by different paths.
    loop: asyncio.AbstractEventLoop = loop_factory()
    seen: list[tuple[Any, ...]] = []
    try:
        loop.call_soon(lambda: seen.append(()))
        loop.call_soon(lambda a: seen.append((a,)), 1)
        loop.call_soon(lambda a, b, c: seen.append((a, b, c)), 1, 2, 3)
        loop.call_later(0, lambda a, b: seen.append((a, b)), 4, 5)
        loop.run_until_complete(asyncio.sleep(0.01))
        assert seen == [(), (1,), (1, 2, 3), (4, 5)]
    finally:
        loop.close()


def test_keyboard_interrupt_keeps_the_rest_of_the_batch(loop_factory: Any) -> None:
    loop: asyncio.AbstractEventLoop = loop_factory()
    seen: list[str] = []

    def interrupt() -> None:
        raise KeyboardInterrupt

    try:
        loop.call_soon(seen.append, "first")
        loop.call_soon(interrupt)
        loop.call_soon(seen.append, "after")
        with pytest.raises(KeyboardInterrupt):
            loop.run_forever()
        assert seen == ["first"]
        loop.call_soon(seen.append, "newer")
        loop.call_soon(loop.stop)
        loop.run_forever()
        assert seen == ["first", "after", "newer"]
    finally:
        loop.close()


# The compiled run loop recycles a handle once it has run, if nothing else
# refers to it (scheduler._free_handles).  What user code can see must not
# change: a handle it keeps stays as it was, a weak reference to one it
# dropped dies as it would when the handle is freed, and a recycled handle
# is indistinguishable from a new one.


def _run_turns(loop: asyncio.AbstractEventLoop, turns: int = 3) -> None:
    for _ in range(turns):
        loop.call_soon(loop.stop)
        loop.run_forever()


def test_a_handle_kept_by_its_caller_is_not_reused(loop_factory: Any) -> None:
    loop: asyncio.AbstractEventLoop = loop_factory()
    seen: list[int] = []
    try:
        kept = loop.call_soon(seen.append, 1)
        kept_repr = repr(kept)
        _run_turns(loop)
        # Many more callbacks, whose handles are dropped at once.
        for n in range(2, 300):
            loop.call_soon(seen.append, n)
        _run_turns(loop)
        assert seen == list(range(1, 300))
        assert repr(kept) == kept_repr
        assert not kept.cancelled()
        fresh = [loop.call_soon(seen.append, -n) for n in range(300)]
        assert all(handle is not kept for handle in fresh)
        for handle in fresh:
            handle.cancel()
        _run_turns(loop)
        assert seen == list(range(1, 300))
    finally:
        loop.close()


def test_a_weak_reference_to_a_run_handle_dies(loop_factory: Any) -> None:
    loop: asyncio.AbstractEventLoop = loop_factory()
    seen: list[str] = []
    try:
        ref = weakref.ref(loop.call_soon(seen.append, "ran"))
        _run_turns(loop)
        assert seen == ["ran"]
        assert ref() is None
        # And stays dead however many handles are made and run afterwards.
        for _ in range(50):
            loop.call_soon(seen.append, "more")
        _run_turns(loop)
        assert ref() is None
    finally:
        loop.close()


def test_recycled_handles_start_afresh(loop_factory: Any) -> None:
    loop: asyncio.AbstractEventLoop = loop_factory()
    seen: list[Any] = []
    variable: contextvars.ContextVar[str] = contextvars.ContextVar("variable", default="unset")
    try:
        for n in range(100):
            handle = loop.call_soon(seen.append, n)
            if n % 3 == 0:
                handle.cancel()
            repr(handle)  # a cached repr must not survive into the next use
            del handle
        _run_turns(loop)
        assert seen == [n for n in range(100) if n % 3]
        seen.clear()
        context = contextvars.copy_context()
        context.run(variable.set, "set")
        handles = [loop.call_soon(lambda: seen.append(variable.get())) for _ in range(50)]
        handles += [loop.call_soon(lambda: seen.append(variable.get()), context=context)]
        for handle in handles:
            assert not handle.cancelled()
            assert "cancelled" not in repr(handle)
        del handles
        _run_turns(loop)
        assert seen == ["unset"] * 50 + ["set"]
    finally:
        loop.close()


@pytest.mark.skipif(not slipstream.compiled, reason="the interpreted loop does not recycle")
def test_the_compiled_loop_recycles_handles_nobody_holds() -> None:
    loop = slipstream.new_event_loop()
    # Not in debug mode (PYTHONASYNCIODEBUG=1 turns it on), whose batch times
    # and names each callback and recycles nothing.
    loop.set_debug(False)
    try:
        for n in range(20):
            loop.call_soon(len, "x" * n)
        _run_turns(loop)
        # The recycled handles live on, emptied, in the scheduler's free list
        # (holding no callback, arguments, context or loop).
        handle_type = type(loop.call_soon(len, ""))
        emptied = [
            obj
            for obj in gc.get_objects()
            if type(obj) is handle_type
            and getattr(obj, "_callback", 0) is None
            and getattr(obj, "_loop", 0) is None
        ]
        assert len(emptied) >= 10
    finally:
        loop.close()


# keep_attributes_inline: on CPython 3.11 and 3.12 the compiled loop's classes
# allocate through object.__new__, so their instances keep their attributes
# inline, as any Python object does, and lookups on them are specialised.


def _inline_expected() -> bool:
    return slipstream.compiled and (3, 11) <= sys.version_info[:2] < (3, 13)


def test_loop_classes_keep_attributes_inline_where_cpython_allows() -> None:
    from slipstream.core.scheduler import keep_attributes_inline
    from slipstream.event_loop import EventLoop

    class Subclass(EventLoop):
        pass

    assert keep_attributes_inline(EventLoop) is _inline_expected()
    assert keep_attributes_inline(Subclass) is _inline_expected()  # by __init_subclass__
    # Not a class over the scheduler, or not a class: nothing is changed.
    assert keep_attributes_inline(dict) is False
    assert keep_attributes_inline(42) is False  # type: ignore[arg-type]


def test_loop_instances_with_inline_attributes_behave_as_any_object() -> None:
    from slipstream.event_loop import EventLoop

    class Many(EventLoop):
        def __init__(self) -> None:
            super().__init__()
            # More attributes than CPython keeps inline (30): the rest go to
            # a real dict, as for any object.
            for n in range(40):
                setattr(self, f"extra_{n}", n)

    for cls in (EventLoop, Many):
        loop = cls()
        try:
            loop.marker = "set"  # type: ignore[attr-defined]
            assert loop.marker == "set"  # type: ignore[attr-defined]
            assert vars(loop)["marker"] == "set"
            del loop.marker  # type: ignore[attr-defined]
            assert not hasattr(loop, "marker")
            if cls is Many:
                assert [getattr(loop, f"extra_{n}") for n in range(40)] == list(range(40))
            assert loop.run_until_complete(asyncio.sleep(0, "done")) == "done"
            # Compiled, what asyncio's C code calls by name is bound on the
            # instance (interpreted, nothing is).
            bound = {"call_soon", "get_debug"} & set(vars(loop))
            assert bound == ({"call_soon", "get_debug"} if slipstream.compiled else set())
        finally:
            loop.close()
        weak = weakref.ref(loop)
        del loop
        gc.collect()
        assert weak() is None


def test_loop_classes_own_their_compiled_hot_methods() -> None:
    # Compiled, each loop class holds its own copies of the scheduler's hot
    # methods (own_compiled_methods), so a call on its instances skips the
    # MRO walk of the inherited descriptor; overrides are left alone.
    from slipstream.core.scheduler import Scheduler, own_compiled_methods
    from slipstream.event_loop import EventLoop

    class Clocked(EventLoop):
        def time(self) -> float:
            return float(super().time()) + 1000.0

    names = ("call_soon", "call_at", "call_later", "time", "create_future", "create_task")
    for cls in (EventLoop, Clocked):
        for name in names:
            method = getattr(cls, name)
            if cls is Clocked and name == "time":
                assert method is Clocked.__dict__["time"]
            elif slipstream.compiled:
                assert name in cls.__dict__ and method.__objclass__ is cls
            else:
                assert method is getattr(Scheduler, name)
    # Nothing left to copy a second time.
    assert own_compiled_methods(EventLoop, names) == 0
    with pytest.raises(TypeError):
        own_compiled_methods(EventLoop, (1,))  # type: ignore[arg-type]

    loop = Clocked()
    try:
        # The override is the loop's clock: timers run on it.
        assert loop.time() > 1000.0
        fired: list[float] = []
        loop.call_later(0.01, lambda: fired.append(loop.time()))
        loop.run_until_complete(asyncio.sleep(0.05))
        assert fired and fired[0] > 1000.0
        assert loop.run_until_complete(loop.create_task(asyncio.sleep(0, "ok"))) == "ok"
    finally:
        loop.close()
