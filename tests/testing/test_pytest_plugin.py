"""The pytest plugin, in real inner pytest runs: alone, beside pytest-asyncio, beside anyio.

Each test writes a small test file, runs pytest on it in-process with
pytester (the plugin loads through its ``pytest11`` entry point, as it does
for users), and checks the outcome of every inner test.  The inner tests
assert which loop and which clock they ran on.
"""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ["pytester"]

ALONE = ("-p", "no:asyncio", "-p", "no:anyio")
WITH_PYTEST_ASYNCIO = ("-p", "no:anyio")
WITH_ANYIO = ("-p", "no:asyncio")

LOOP_CHECKS = """
import asyncio

import pytest

import slipstream
from slipstream.testing import VirtualEventLoop


def loop_kind() -> str:
    loop = asyncio.get_running_loop()
    if isinstance(loop, VirtualEventLoop):
        return "virtual"
    return "slipstream" if isinstance(loop, slipstream.EventLoop) else "other"
"""


def write_tests(pytester: pytest.Pytester, body: str, **extra_files: str) -> None:
    # pytest-asyncio warns unless its fixture loop scope is set.
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\ntimeout = 30\n")
    pytester.makepyfile(test_inner=LOOP_CHECKS + textwrap.dedent(body))
    for name, text in extra_files.items():
        pytester.makepyfile(**{name: textwrap.dedent(text)})


# -- alone ---------------------------------------------------------------------------


def test_the_plugin_changes_nothing_unless_asked(pytester: pytest.Pytester) -> None:
    write_tests(pytester, """
        def test_sync():
            assert True

        async def test_async_unclaimed():
            pass
    """)
    result = pytester.runpytest(*ALONE)
    # Loaded (through its pytest11 entry point), and idle: pytest gives its
    # own verdict on an async test nobody runs.
    result.stdout.fnmatch_lines(["plugins:*slipstream-*"])
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*async def functions are not natively supported*"])


def test_dash_dash_slipstream_runs_async_tests_on_slipstream(pytester: pytest.Pytester) -> None:
    write_tests(pytester, """
        @pytest.fixture
        def greeting():
            return "hello"

        async def test_on_slipstream(greeting):
            assert loop_kind() == "slipstream"
            assert greeting == "hello"
            await asyncio.sleep(0.01)

        class TestInAClass:
            async def test_method(self):
                assert loop_kind() == "slipstream"

        async def test_failure_is_reported():
            await asyncio.sleep(0)
            raise AssertionError("the failure of an async test")
    """)
    result = pytester.runpytest("--slipstream", *ALONE)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: the failure of an async test*"])


def test_virtual_time_marker_and_virtual_clock_fixture(pytester: pytest.Pytester) -> None:
    write_tests(pytester, """
        import time

        @pytest.mark.virtual_time
        async def test_an_hour_in_no_time(virtual_clock):
            started = time.perf_counter()
            await asyncio.sleep(3600)
            assert asyncio.get_running_loop().time() == 3600.0
            assert virtual_clock.time() == 3600.0
            assert loop_kind() == "virtual"
            assert time.perf_counter() - started < 1.0

        @pytest.mark.virtual_time(start=100.0, autojump=False)
        async def test_clock_by_hand(virtual_clock):
            sleeper = asyncio.create_task(asyncio.sleep(30))
            await asyncio.sleep(0)
            virtual_clock.advance(30)
            await sleeper
            assert asyncio.get_running_loop().time() == 130.0

        def test_sync_test_makes_its_own_loop(virtual_clock):
            from slipstream.testing import new_virtual_loop
            with asyncio.Runner(
                loop_factory=lambda: new_virtual_loop(clock=virtual_clock)
            ) as runner:
                runner.run(asyncio.sleep(5))
            assert virtual_clock.time() == 5.0

        @pytest.mark.virtual_time(speed=2)
        async def test_bad_marker():
            pass
    """)
    result = pytester.runpytest(*ALONE)
    result.assert_outcomes(passed=3, errors=0, failed=1)
    result.stdout.fnmatch_lines(["*unknown virtual_time argument(s): speed*"])


# -- beside pytest-asyncio -----------------------------------------------------------

PYTEST_ASYNCIO_TESTS = """
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def loop_of_fixture():
        await asyncio.sleep(0)
        return asyncio.get_running_loop()

    @pytest.mark.asyncio
    async def test_marked_asyncio(loop_of_fixture):
        assert loop_of_fixture is asyncio.get_running_loop()
        print("KIND", loop_kind())

    @pytest.mark.virtual_time
    async def test_virtual_unmarked(virtual_clock):
        await asyncio.sleep(60)
        assert loop_kind() == "virtual" and virtual_clock.time() == 60.0
"""


def test_beside_pytest_asyncio_nothing_changes_without_the_flag(
    pytester: pytest.Pytester,
) -> None:
    write_tests(pytester, PYTEST_ASYNCIO_TESTS)
    result = pytester.runpytest("-s", *WITH_PYTEST_ASYNCIO)
    result.assert_outcomes(passed=2)
    # pytest-asyncio's own test stays on asyncio's loop; the one it does not
    # claim (no asyncio mark, strict mode) ran here on virtual time.
    result.stdout.fnmatch_lines(["*KIND other*"])


def test_beside_pytest_asyncio_the_flag_gives_its_tests_slipstream(
    pytester: pytest.Pytester,
) -> None:
    write_tests(pytester, PYTEST_ASYNCIO_TESTS + """
    @pytest.mark.asyncio
    @pytest.mark.virtual_time(start=5.0)
    async def test_marked_both(virtual_clock, loop_of_fixture):
        assert loop_of_fixture is asyncio.get_running_loop()
        await asyncio.wait_for(asyncio.sleep(10), timeout=20)
        assert loop_kind() == "virtual"
        assert asyncio.get_running_loop().clock is virtual_clock
        assert virtual_clock.time() == 15.0
    """)
    result = pytester.runpytest("-s", "--slipstream", *WITH_PYTEST_ASYNCIO)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*KIND slipstream*"])


def test_beside_pytest_asyncio_in_auto_mode(pytester: pytest.Pytester) -> None:
    write_tests(pytester, """
        async def test_unmarked_is_pytest_asyncios():
            assert loop_kind() == "slipstream"

        @pytest.mark.virtual_time
        async def test_virtual():
            await asyncio.sleep(1000)
            assert loop_kind() == "virtual"
    """)
    result = pytester.runpytest("--slipstream", "-o", "asyncio_mode=auto", *WITH_PYTEST_ASYNCIO)
    result.assert_outcomes(passed=2)


def test_virtual_time_on_a_pytest_asyncio_test_needs_the_flag(pytester: pytest.Pytester) -> None:
    write_tests(pytester, """
        @pytest.mark.asyncio
        @pytest.mark.virtual_time
        async def test_marked_both():
            await asyncio.sleep(3600)
    """)
    result = pytester.runpytest(*WITH_PYTEST_ASYNCIO)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*pass --slipstream so that pytest-asyncio runs it*"])


# -- beside anyio's plugin -----------------------------------------------------------

ANYIO_CONFTEST = """
    import functools

    import pytest

    import slipstream
    from slipstream.testing import new_virtual_loop


    @pytest.fixture
    def anyio_backend(request, virtual_clock):
        if request.node.get_closest_marker("virtual_time"):
            factory = functools.partial(new_virtual_loop, clock=virtual_clock)
        else:
            factory = slipstream.new_event_loop
        return "asyncio", {"loop_factory": factory}
"""

ANYIO_TESTS = """
    import anyio

    RUNS = []

    @pytest.mark.anyio
    async def test_on_slipstream():
        RUNS.append("slipstream")
        assert loop_kind() == "slipstream"
        async with anyio.create_task_group() as group:
            group.start_soon(anyio.sleep, 0.01)

    @pytest.mark.anyio
    @pytest.mark.virtual_time(start=10.0)
    async def test_on_virtual_time(virtual_clock):
        RUNS.append("virtual")
        with anyio.fail_after(100):
            await anyio.sleep(60)
        assert anyio.current_time() == 70.0 == virtual_clock.time()
        assert loop_kind() == "virtual"

    def test_each_ran_once():
        assert RUNS == ["slipstream", "virtual"]
"""


@pytest.mark.parametrize("flag", [(), ("--slipstream",)], ids=["plain", "dash-dash-slipstream"])
def test_beside_anyio(pytester: pytest.Pytester, flag: tuple[str, ...]) -> None:
    write_tests(pytester, ANYIO_TESTS, conftest=ANYIO_CONFTEST)
    result = pytester.runpytest(*flag, *WITH_ANYIO)
    result.assert_outcomes(passed=3)


def test_beside_pytest_asyncio_and_anyio_together(pytester: pytest.Pytester) -> None:
    write_tests(pytester, ANYIO_TESTS + PYTEST_ASYNCIO_TESTS, conftest=ANYIO_CONFTEST)
    result = pytester.runpytest("-s", "--slipstream")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["*KIND slipstream*"])
