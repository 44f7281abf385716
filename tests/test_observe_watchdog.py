"""The blocked-loop watchdog, with real stalls: in process, through the environment and the CLI.

The child-process tests run once per build (compiled and ``SLIPSTREAM_PURE=1``),
so both are shown to report the stall while it lasts and name the line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import slipstream
from slipstream.observe import BlockingWatchdog, watch_blocking

STALL_LINE = "time.sleep(0.5)  # the stall"

STALLING_SCRIPT = textwrap.dedent(f"""\
    import asyncio
    import time

    async def stuck_helper():
        {STALL_LINE}

    async def main():
        await asyncio.sleep(0.05)
        await stuck_helper()
        await asyncio.sleep(0.05)

    asyncio.run(main())
    print("done")
""")


def _reports(records: list[logging.LogRecord]) -> tuple[list[str], list[str]]:
    messages = [r.getMessage() for r in records if r.name == "slipstream.observe"]
    stalls = [m for m in messages if m.startswith("Event loop blocked")]
    ends = [m for m in messages if m.startswith("Event loop unblocked")]
    return stalls, ends


async def _stalling_main() -> None:
    await asyncio.sleep(0.05)
    time.sleep(0.5)  # the stall
    await asyncio.sleep(0.05)


def test_a_stall_gives_one_report_naming_the_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="slipstream.observe")
    slipstream.run(_stalling_main(), blocking_ms=100)
    stalls, ends = _reports(caplog.records)
    assert len(stalls) == 1, stalls
    report = stalls[0]
    assert "time.sleep(0.5)  # the stall" in report  # the stack names the line
    assert f"{__file__}" in report
    assert re.search(r"^Task: 'Task-\d+'$", report, re.MULTILINE)
    assert "_stalling_main() at" in report  # the coroutine chain
    assert "coro=<_stalling_main()" in report  # the task, as asyncio's repr shows it
    assert len(ends) == 1, ends
    total = float(ends[0].split("after ")[1].split(" s")[0])
    assert 0.35 <= total <= 1.5


def test_short_callbacks_are_not_reported(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="slipstream.observe")

    async def busy_but_brief() -> None:
        for _ in range(20):
            time.sleep(0.01)
            await asyncio.sleep(0)

    slipstream.run(busy_but_brief(), blocking_ms=100)
    assert _reports(caplog.records) == ([], [])


def test_an_idle_loop_is_not_blocked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="slipstream.observe")
    slipstream.run(asyncio.sleep(0.4), blocking_ms=50)  # waiting in the poller is not a stall
    assert _reports(caplog.records) == ([], [])


def test_the_thread_ends_with_the_loop() -> None:
    loop = slipstream.new_event_loop()
    watchdog = watch_blocking(loop, 20)
    assert isinstance(watchdog, BlockingWatchdog)
    loop.run_until_complete(asyncio.sleep(0.01))
    loop.close()
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and any(
        t.name == "slipstream-blocking-watchdog" for t in threading.enumerate()
    ):
        time.sleep(0.01)
    assert not any(t.name == "slipstream-blocking-watchdog" for t in threading.enumerate())


def test_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLIPSTREAM_BLOCKING_MS", raising=False)
    loop = slipstream.new_event_loop()
    try:
        assert watch_blocking(loop) is None
        assert loop.current_callback() == (0, None)  # no callback numbering either
    finally:
        loop.close()


@pytest.mark.parametrize("bad", [0, -5, "100", True])
def test_bad_thresholds_are_refused(bad: object) -> None:
    async def nothing() -> None:
        pass

    coro = nothing()
    with pytest.raises((TypeError, ValueError)):
        slipstream.run(coro, blocking_ms=bad)  # type: ignore[arg-type]
    coro.close()


def _run_child(arguments: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    source = Path(slipstream.__file__).resolve().parents[1]
    full_env = {**os.environ, **env, "PYTHONPATH": str(source)}
    return subprocess.run(
        [sys.executable, *arguments], capture_output=True, text=True, env=full_env, timeout=60
    )


BUILDS = {"compiled-if-installed": {"SLIPSTREAM_PURE": "0"}, "pure": {"SLIPSTREAM_PURE": "1"}}


@pytest.mark.parametrize("build", sorted(BUILDS))
@pytest.mark.parametrize("how", ["cli", "environment"])
def test_child_process_stall_is_reported(tmp_path: Path, build: str, how: str) -> None:
    script = tmp_path / "stalling.py"
    script.write_text(STALLING_SCRIPT)
    env = dict(BUILDS[build])
    if how == "cli":
        arguments = ["-m", "slipstream", "--blocking-ms", "100", str(script)]
    else:
        env["SLIPSTREAM_BLOCKING_MS"] = "100"
        arguments = ["-m", "slipstream", str(script)]
    result = _run_child(arguments, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    assert result.stderr.count("Event loop blocked for") == 1, result.stderr
    assert STALL_LINE in result.stderr
    assert "stuck_helper() at" in result.stderr and "main() at" in result.stderr
    assert result.stderr.count("Event loop unblocked after") == 1


def test_a_stall_that_ends_the_program_still_gets_its_closing_line(tmp_path: Path) -> None:
    script = tmp_path / "last.py"
    last_act = "    await stuck_helper()\n"
    tail = "    await asyncio.sleep(0.05)\n"
    script.write_text(STALLING_SCRIPT.replace(last_act + tail, last_act))
    assert last_act + "\n" in script.read_text()  # the stall is the run's last act
    result = _run_child(["-m", "slipstream", "--blocking-ms", "100", str(script)], {})
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("Event loop blocked for") == 1, result.stderr
    assert result.stderr.count("Event loop unblocked after") == 1, result.stderr
