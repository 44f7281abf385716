"""``python -m slipstream``: programs run unchanged, with slipstream as their loop."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import slipstream

PROGRAM = textwrap.dedent(
    """
    import asyncio, sys

    async def main() -> None:
        loop = asyncio.get_running_loop()
        print(type(loop).__module__, type(loop).__name__)
        print(sys.argv[1:])
        print(__name__)

    asyncio.run(main())
    if len(sys.argv) > 1 and sys.argv[1] == "fail":
        sys.exit(3)
    """
)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(cwd), *sys.path])
    return subprocess.run(
        [sys.executable, "-m", "slipstream", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_script_runs_on_slipstream_with_its_arguments(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text(PROGRAM)
    done = run_cli("prog.py", "a", "b", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["slipstream.event_loop EventLoop", "['a', 'b']", "__main__"]


def test_module_runs_on_slipstream(tmp_path: Path) -> None:
    (tmp_path / "progmod.py").write_text(PROGRAM)
    done = run_cli("-m", "progmod", "x", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["slipstream.event_loop EventLoop", "['x']", "__main__"]


def test_exit_status_is_the_programs(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text(PROGRAM)
    assert run_cli("prog.py", "fail", cwd=tmp_path).returncode == 3


def test_usage_without_arguments(tmp_path: Path) -> None:
    done = run_cli(cwd=tmp_path)
    assert done.returncode == 2
    assert "usage" in done.stdout


def test_run_has_asyncio_run_contract() -> None:
    async def main() -> str:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, slipstream.EventLoop)
        inner = asyncio.sleep(0)
        try:
            with pytest.raises(RuntimeError, match="cannot be called from a running event loop"):
                slipstream.run(inner)
        finally:
            inner.close()
        return "done"

    assert slipstream.run(main()) == "done"


def test_install_makes_new_loops_slipstream() -> None:
    old = asyncio.get_event_loop_policy()
    try:
        slipstream.install()
        loop = asyncio.new_event_loop()
        assert isinstance(loop, slipstream.EventLoop)
        loop.close()
    finally:
        asyncio.set_event_loop_policy(old)
