"""In-process side of the conformance runner: patch CPython's asyncio tests onto a foreign loop.

One child process runs one module of ``test.test_asyncio`` (or what is left of it after a hang):

    python -m tests.conformance.harness --loop slipstream --module test.test_asyncio.test_events \
        --tests-file IDS --events EVENTS --timeout 30 --repo REPO --workdir DIR

``install_loop`` makes every loop the tests create come from one factory (``LoopMaker``): the
policy, ``FunctionalTestCaseMixin.new_loop`` and the ``Foreign*`` test classes all call it, so a
switch to ``loop_factory`` (the hook that outlives the policy system in 3.14) is a change here only.
``prepare_module`` builds the ``Foreign*`` classes that the manifests name.

The events file is the status file that the parent reads: one JSON object per line, written
unbuffered, ``{"ev": "start", "id": ...}`` before each test and ``{"ev": "result", ...}`` after it.
A per-test watchdog (``faulthandler.dump_traceback_later(exit=True)``) kills a hung child; the
parent then sees a test that started and never ended, and records it as a hang.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import importlib
import json
import os
import sys
import time
import traceback
import types
import unittest
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, cast

LOOP_NAMES = ("slipstream", "asyncio")

# Outcomes a test can get.  Only the parent gives "hang" (and "error" for a child that died).
OUTCOMES = ("pass", "fail", "error", "hang", "skip")

ExcInfo = tuple[type[BaseException], BaseException, types.TracebackType | None]
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


# --------------------------------------------------------------------------------------------
# Which loop


@dataclass(frozen=True)
class LoopSpec:
    """A loop under test: how to make one, and the policy class to derive the test policy from."""

    name: str
    factory: LoopFactory
    policy_base: type[asyncio.AbstractEventLoopPolicy]
    origin: str  # where the loop's code was imported from, for the report


def load_loop(name: str, repo: Path) -> LoopSpec:
    """Resolve ``--loop``; raises (ImportError, AttributeError, ...) if the loop can't be had."""
    if name == "asyncio":
        # The self-check: stock asyncio's loop, run through exactly the same patched path.
        origin = f"asyncio.SelectorEventLoop ({asyncio.__file__})"
        return LoopSpec(name, asyncio.SelectorEventLoop, asyncio.DefaultEventLoopPolicy, origin)
    if name == "slipstream":
        try:
            module = importlib.import_module("slipstream")
        except ModuleNotFoundError as exc:  # not installed (a broken install is reported as is)
            if exc.name != "slipstream":
                raise
            sys.path.insert(0, str(repo / "src"))
            module = importlib.import_module("slipstream")
        factory = cast(LoopFactory, module.new_event_loop)
        base = getattr(module, "EventLoopPolicy", asyncio.DefaultEventLoopPolicy)
        policy_base = cast(type[asyncio.AbstractEventLoopPolicy], base)
        return LoopSpec(name, factory, policy_base, f"slipstream ({module.__file__})")
    raise ValueError(f"unknown loop {name!r}; expected one of {LOOP_NAMES}")


class LoopMaker:
    """The one place where the tests' loops come from; counts them, so that a test which never
    touched the loop under test can be told apart from one that passed on it."""

    def __init__(self, factory: LoopFactory) -> None:
        self._factory = factory
        self.created = 0

    def __call__(self) -> asyncio.AbstractEventLoop:
        loop = self._factory()
        self.created += 1
        return loop


# --------------------------------------------------------------------------------------------
# Patches applied before the test module is imported


def _test_module(name: str) -> types.ModuleType:
    return importlib.import_module(f"test.test_asyncio.{name}")


def install_loop(spec: LoopSpec) -> LoopMaker:
    """Make the foreign loop the one that asyncio and the test helpers hand out."""
    make_loop = LoopMaker(spec.factory)

    def new_event_loop(self: asyncio.AbstractEventLoopPolicy) -> asyncio.AbstractEventLoop:
        return make_loop()

    policy_cls = cast(
        type[asyncio.AbstractEventLoopPolicy],
        type("ForeignEventLoopPolicy", (spec.policy_base,), {"new_event_loop": new_event_loop}),
    )

    # Every module's tearDownModule (and many tests) call set_event_loop_policy(None), after
    # which get_event_loop_policy() lazily builds asyncio.DefaultEventLoopPolicy() through
    # events._init_event_loop_policy().  Make that lazy default ours for the whole run, without
    # renaming asyncio.DefaultEventLoopPolicy, which tests also instantiate on purpose.
    def init_event_loop_policy() -> None:
        asyncio.set_event_loop_policy(policy_cls())

    asyncio.events._init_event_loop_policy = init_event_loop_policy  # type: ignore[attr-defined]
    asyncio.set_event_loop_policy(policy_cls())

    # test_utils.TestCase.close_loop (the cleanup of every loop registered with set_event_loop)
    # reads the private loop._default_executor and the ThreadedChildWatcher's private threads.
    # Same effect through public API: drain the default executor while the loop is open, close.
    def close_loop(loop: asyncio.AbstractEventLoop) -> None:
        if not loop.is_closed():
            loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()

    test_utils = _test_module("utils")
    test_utils.TestCase.close_loop = staticmethod(close_loop)

    # FunctionalTestCaseMixin.new_loop() is what test_buffered_proto, test_server and
    # test_sslproto build their loop with; their Selector* subclasses override it again with
    # asyncio.SelectorEventLoop(), which prepare_module() redirects too.
    functional = _test_module("functional")
    functional.FunctionalTestCaseMixin.new_loop = _new_loop_method(make_loop)
    return make_loop


def _new_loop_method(make_loop: LoopMaker) -> Callable[[object], asyncio.AbstractEventLoop]:
    def new_loop(self: object) -> asyncio.AbstractEventLoop:
        return make_loop()

    return new_loop


def prepare_module(module: types.ModuleType, make_loop: LoopMaker) -> None:
    """Patch an imported test module so that its manifest IDs resolve to the foreign loop."""
    short = module.__name__.rsplit(".", 1)[-1]
    test_utils = _test_module("utils")
    base_case: type[unittest.TestCase] = test_utils.TestCase

    # test_events, test_sendfile, test_sock_lowlevel: one class per selector, each with a
    # create_event_loop() that builds asyncio.SelectorEventLoop(selector).  ForeignLoopTests
    # is built like SelectEventLoopTests, from the same mixins, minus UnixEventLoopTestsMixin's
    # child-watcher setup (test_events): a foreign loop reaps its own children.
    mixins = {
        "test_events": ("EventLoopTestsMixin", "SubprocessTestsMixin"),
        "test_sendfile": ("SendfileTestsBase",),
        "test_sock_lowlevel": ("BaseSockTestsMixin",),
    }
    if short in mixins:
        bases = (*(getattr(module, mixin) for mixin in mixins[short]), base_case)
        namespace = {"create_event_loop": _new_loop_method(make_loop)}
        _add_class(module, "ForeignLoopTests", bases, namespace)

    # test_subprocess: one class per child watcher, whose setUp installs that watcher with
    # policy.set_child_watcher().  They collapse into one class that only makes the loop, as
    # the Windows SubprocessProactorTests does.
    if short == "test_subprocess":
        cls = _add_class(module, "ForeignSubprocessTests", (module.SubprocessMixin, base_case), {})

        def set_up(self: Any) -> None:
            super(cls, self).setUp()
            self.loop = make_loop()
            self.set_event_loop(self.loop)

        cls.setUp = set_up  # type: ignore[method-assign]

    # BufferedProtocolSelectorTests, SelectorStartServerTests, SelectorStartTLSTests, ...
    # override new_loop() with asyncio.SelectorEventLoop(): point each override at our loop.
    functional = _test_module("functional")
    mixin_cls = functional.FunctionalTestCaseMixin
    for value in list(vars(module).values()):
        if isinstance(value, type) and issubclass(value, mixin_cls) and "new_loop" in vars(value):
            setattr(value, "new_loop", _new_loop_method(make_loop))  # noqa: B010


def _add_class(
    module: types.ModuleType, name: str, bases: tuple[type, ...], namespace: dict[str, Any]
) -> type[unittest.TestCase]:
    namespace = {**namespace, "__module__": module.__name__, "__qualname__": name}
    cls = cast(type[unittest.TestCase], type(name, bases, namespace))
    setattr(module, name, cls)
    return cls


# --------------------------------------------------------------------------------------------
# Running the tests of one module and reporting them


class EventSink:
    """Appends JSON lines to the events file with unbuffered writes, so that every line written
    is in the file even if the watchdog ends the process (faulthandler exits with _exit)."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.reported: set[str] = set()

    def _emit(self, event: dict[str, object]) -> None:
        data = (json.dumps(event) + "\n").encode()
        while data:
            data = data[os.write(self._fd, data) :]

    def start(self, test_id: str) -> None:
        self._emit({"ev": "start", "id": test_id})

    def result(
        self, test_id: str, outcome: str, detail: str = "", duration: float = 0.0, loops: int = 0
    ) -> None:
        self.reported.add(test_id)
        self._emit(
            {
                "ev": "result",
                "id": test_id,
                "outcome": outcome,
                "detail": detail,
                "duration": round(duration, 4),
                "loops": loops,
            }
        )

    def loop(self, origin: str) -> None:
        self._emit({"ev": "loop", "origin": origin})

    def note(self, text: str) -> None:
        self._emit({"ev": "note", "text": text})

    def done(self) -> None:
        self._emit({"ev": "done"})


def _format_error(err: ExcInfo) -> str:
    return "".join(traceback.format_exception(err[1]))


class Recorder(unittest.TestResult):
    """Turns unittest's callbacks into one event per test, and re-arms the watchdog."""

    def __init__(self, sink: EventSink, watchdog: Callable[[], None], maker: LoopMaker) -> None:
        super().__init__()
        self._sink = sink
        self._watchdog = watchdog
        self._maker = maker
        self._current: unittest.TestCase | None = None
        self._outcome = "pass"
        self._details: list[str] = []
        self._started = 0.0
        self._loops_before = 0
        # setUpClass/setUpModule failures or skips: reported against the tests they prevented.
        self.fixture_problems: list[tuple[str, str]] = []

    def startTest(self, test: unittest.TestCase) -> None:
        super().startTest(test)
        self._watchdog()
        self._sink.start(test.id())
        self._current = test
        self._outcome = "pass"
        self._details = []
        self._loops_before = self._maker.created
        self._started = time.monotonic()

    def stopTest(self, test: unittest.TestCase) -> None:
        duration = time.monotonic() - self._started
        loops = self._maker.created - self._loops_before
        self._sink.result(test.id(), self._outcome, "\n".join(self._details), duration, loops)
        self._current = None
        self._watchdog()  # re-armed for the class and module fixtures that may run next
        super().stopTest(test)

    def _record(self, test: unittest.TestCase, outcome: str, detail: str) -> None:
        if self._current is None:  # an _ErrorHolder for a class or module fixture
            self.fixture_problems.append((outcome, f"{test.id()}: {detail}"))
            self._sink.note(f"{outcome} in {test.id()}:\n{detail}")
            return
        rank = {"pass": 0, "skip": 1, "fail": 2, "error": 3}
        if rank[outcome] > rank[self._outcome]:
            self._outcome = outcome
        self._details.append(detail)

    def addError(self, test: unittest.TestCase, err: Any) -> None:
        super().addError(test, err)
        self._record(test, "error", _format_error(err))

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addFailure(test, err)
        self._record(test, "fail", _format_error(err))

    def addSubTest(self, test: unittest.TestCase, subtest: unittest.TestCase, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self._record(test, "fail" if failed else "error", f"{subtest}\n{_format_error(err)}")

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        super().addSkip(test, reason)
        if self._current is not None and test is not self._current:
            self._details.append(f"subtest skipped: {test}: {reason}")
            return
        self._record(test, "skip", reason)

    def addExpectedFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self._details.append("expected failure")

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        super().addUnexpectedSuccess(test)
        self._record(test, "fail", "unexpected success of a test marked expectedFailure")


def _load(module: types.ModuleType, test_id: str) -> unittest.TestCase:
    class_name, _, method = test_id.removeprefix(module.__name__ + ".").partition(".")
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type) or not issubclass(cls, unittest.TestCase):
        raise LookupError(f"no test class {class_name!r} in {module.__name__}")
    return cls(method)  # raises ValueError if there is no such method


def run_module(
    loop_name: str,
    module_name: str,
    test_ids: list[str],
    sink: EventSink,
    repo: Path,
    timeout: float,
    stderr: TextIO,
) -> None:
    """Import one test module against the foreign loop and run the given tests in it."""

    def arm_watchdog() -> None:
        faulthandler.dump_traceback_later(timeout, exit=True, file=stderr)

    arm_watchdog()
    try:
        spec = load_loop(loop_name, repo)
        maker = install_loop(spec)
    except Exception:
        detail = f"cannot set up --loop {loop_name}:\n{traceback.format_exc()}"
        for test_id in test_ids:
            sink.result(test_id, "error", detail)
        return
    sink.loop(spec.origin)
    try:
        module = importlib.import_module(module_name)
        prepare_module(module, maker)
    except unittest.SkipTest as exc:
        for test_id in test_ids:
            sink.result(test_id, "skip", f"module skipped: {exc}")
        return
    except Exception:
        detail = f"cannot import {module_name}:\n{traceback.format_exc()}"
        for test_id in test_ids:
            sink.result(test_id, "error", detail)
        return

    suite = unittest.TestSuite()
    for test_id in test_ids:
        try:
            suite.addTest(_load(module, test_id))
        except (LookupError, ValueError) as exc:
            sink.result(test_id, "error", f"cannot load test: {exc}")
    recorder = Recorder(sink, arm_watchdog, maker)
    suite.run(recorder)

    # Tests a failed or skipped setUpClass/setUpModule kept from running.
    problems = recorder.fixture_problems
    outcome = "skip" if problems and all(o == "skip" for o, _ in problems) else "error"
    detail = "\n".join(text for _, text in problems) or "not run (no reason reported)"
    for test_id in test_ids:
        if test_id not in sink.reported:
            sink.result(test_id, outcome, detail)


def child_main(argv: list[str] | None = None) -> None:
    """Entry point of the child process; always leaves through os._exit."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loop", choices=LOOP_NAMES, required=True)
    parser.add_argument("--module", required=True)
    parser.add_argument("--tests-file", type=Path, required=True)
    parser.add_argument("--events", type=Path, required=True)
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args(argv)

    test_ids = args.tests_file.read_text().split()
    sink = EventSink(args.events.resolve())
    repo = args.repo.resolve()
    # Tests write scratch files (os_helper.TESTFN) into the current directory: not the repo.
    sys.path[:] = [os.path.abspath(p) for p in sys.path]
    os.chdir(args.workdir)
    stderr = sys.__stderr__ or sys.stderr
    faulthandler.enable(file=stderr)
    try:
        run_module(args.loop, args.module, test_ids, sink, repo, args.timeout, stderr)
    except BaseException:  # a harness bug: say so; the parent marks unreported tests as errors
        traceback.print_exc()
        sink.note(f"harness error:\n{traceback.format_exc()}")
    finally:
        faulthandler.cancel_dump_traceback_later()
        sink.done()
        sys.stdout.flush()
        sys.stderr.flush()
        # Don't wait for threads or atexit hooks a test may have left behind.
        os._exit(0)


if __name__ == "__main__":
    child_main()
