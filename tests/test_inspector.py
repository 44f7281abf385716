"""The inspection endpoint and ``python -m slipstream ps|pstree PID``, against real processes.

Each child process builds a three-level tree (main -> a TaskGroup of two workers -> each
awaiting a gather of two leaves), opts in one of the three ways (``slipstream.run(...,
inspect=True)``, ``SLIPSTREAM_INSPECT=1`` under ``python -m slipstream``, ``watch_loop`` on
asyncio's own loop) and is inspected from another process. The children inherit the test's
environment, so ``SLIPSTREAM_PURE=1`` runs them on the pure-Python core.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

import slipstream
from slipstream.observe import inspector
from slipstream.observe.tasktree_text import render_pstree

T = TypeVar("T")
Run = Callable[[Coroutine[Any, Any, T]], T]

CHILD = textwrap.dedent(
    """
    import asyncio, os, signal, sys, time
    import slipstream
    from slipstream.observe import inspector

    MODE = sys.argv[1]

    async def leaf():
        await asyncio.sleep(3600)  # leaf-await

    async def worker(n):
        leaves = [asyncio.create_task(leaf(), name=f"leaf-{n}.{i}") for i in range(2)]
        await asyncio.gather(*leaves)  # worker-await

    async def tree():
        async with asyncio.TaskGroup() as tg:  # tree-await
            for n in range(2):
                tg.create_task(worker(n), name=f"worker-{n}")
            await asyncio.sleep(0.05)
            print("ready", os.getpid(), flush=True)
            if MODE == "blocked":
                time.sleep(4)  # blocked-here

    async def main():
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
        if MODE == "asyncio":
            inspector.watch_loop(loop)
        try:
            await tree()  # main-await
        except asyncio.CancelledError:
            pass
        finally:
            if MODE == "asyncio":
                inspector.unwatch_loop(loop)

    if MODE in ("run", "blocked"):
        slipstream.run(main(), inspect=True)
    else:
        asyncio.run(main())
    print("done", flush=True)
    """
)

# ps columns: (start, end) of "task name" and "awaiter name" in a row (widths 10, 20, 20, 50,
# 50, 15, one space apart).
NAME_COLUMN = slice(32, 52)
AWAITER_NAME_COLUMN = slice(155, 170)


@pytest.fixture
def temp_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private temp dir for the sockets (short: a socket path has at most 107 bytes)."""
    root = Path(tempfile.mkdtemp(prefix="ss-inspect-"))
    monkeypatch.setenv("TMPDIR", str(root))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.delenv(inspector.ENV_VAR, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def line_of(source: str, marker: str) -> int:
    for number, line in enumerate(source.splitlines(), start=1):
        if line.rstrip().endswith(f"# {marker}"):
            return number
    raise AssertionError(marker)


class Child:
    """A child process running CHILD in one of its modes, ready once it printed its pid."""

    def __init__(self, directory: Path, mode: str) -> None:
        self.script = directory / "prog.py"
        self.script.write_text(CHILD)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(sys.path)
        if mode == "env":
            env[inspector.ENV_VAR] = "1"
            argv = [sys.executable, "-m", "slipstream", str(self.script), mode]
        else:
            argv = [sys.executable, str(self.script), mode]
        self.proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("ready "):
            self.proc.kill()
            _, err = self.proc.communicate(timeout=30)
            raise AssertionError(f"the child did not start: {line!r}\n{err}")
        self.pid = int(line.split()[1])

    def stop(self) -> tuple[int, str]:
        """SIGTERM (the child cancels its tree and returns); its exit status and stdout rest."""
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, err
        return self.proc.returncode, out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=30)


def slipstream_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    return subprocess.run(
        [sys.executable, "-m", "slipstream", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def pstree_parents(output: str) -> dict[str, str | None]:
    """Each task of a pstree print, mapped to the task it is nested under."""
    parents: dict[str, str | None] = {}
    path: list[tuple[int, str]] = []
    for line in output.splitlines():
        if "(T) " not in line:
            continue
        depth, name = line.index("(T) "), line.split("(T) ", 1)[1]
        while path and path[-1][0] >= depth:
            path.pop()
        parents[name] = path[-1][1] if path else None
        path.append((depth, name))
    return parents


EXPECTED_PARENTS = {
    "Task-1": None,
    "worker-0": "Task-1",
    "worker-1": "Task-1",
    "leaf-0.0": "worker-0",
    "leaf-0.1": "worker-0",
    "leaf-1.0": "worker-1",
    "leaf-1.1": "worker-1",
}


@pytest.mark.parametrize("mode", ["run", "env", "asyncio"])
def test_ps_and_pstree_of_a_child(temp_root: Path, mode: str) -> None:
    child = Child(temp_root, mode)
    try:
        sock = inspector.socket_path(child.pid)
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(sock.parent).st_mode) == 0o700
        assert os.stat(sock).st_uid == os.getuid()

        tree = slipstream_cli("pstree", str(child.pid))
        assert tree.returncode == 0, tree.stderr
        assert pstree_parents(tree.stdout) == EXPECTED_PARENTS
        lines = tree.stdout.splitlines()
        assert lines[0] == "└── (T) Task-1"
        assert lines[1] == f"    └──  main {child.script}:{line_of(CHILD, 'main-await')}"
        assert lines[2] == f"        └──  tree {child.script}:{line_of(CHILD, 'tree-await')}"
        assert lines[3].startswith("            └──  TaskGroup.__aexit__ ")
        for marker, function, count in (("leaf-await", "leaf", 4), ("worker-await", "worker", 2)):
            location = f"└──  {function} {child.script}:{line_of(CHILD, marker)}"
            assert sum(line.endswith(location) for line in lines) == count
        assert "note:" not in tree.stdout

        table = slipstream_cli("ps", str(child.pid))
        assert table.returncode == 0, table.stderr
        header, _rule, *rows = table.stdout.splitlines()
        assert header.startswith("tid        task id              task name            coroutine")
        awaiters = {row[NAME_COLUMN].strip(): row[AWAITER_NAME_COLUMN].strip() for row in rows}
        assert awaiters == {name: parent or "" for name, parent in EXPECTED_PARENTS.items()}
        assert all(row.split()[0] == str(child.pid) for row in rows)  # loop runs in the main thread
        _, out = child.stop()
        assert out.strip() == "done"
        assert not sock.exists(), "the socket outlived the process"
    finally:
        child.kill()


def test_blocked_loop_is_read_from_the_inspector_thread(temp_root: Path) -> None:
    child = Child(temp_root, "blocked")
    try:
        started = time.monotonic()
        tree = slipstream_cli("pstree", str(child.pid))
        assert tree.returncode == 0, tree.stderr
        assert time.monotonic() - started < 4, "the answer waited for the loop"
        first, second, *rest = tree.stdout.splitlines()
        assert first.startswith("note: the loop did not run the snapshot callback within 1 s")
        blocked_at = f"{child.script}:{line_of(CHILD, 'blocked-here')}"
        assert second == f"note: the loop thread {child.pid} is in tree {blocked_at}"
        assert pstree_parents("\n".join(rest)) == EXPECTED_PARENTS
        child.stop()
    finally:
        child.kill()


def test_cli_errors(temp_root: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    done = slipstream_cli("ps", str(gone.pid))
    assert done.returncode == 1 and f"no process with pid {gone.pid}" in done.stderr

    quiet = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        done = slipstream_cli("pstree", str(quiet.pid))
        assert done.returncode == 1
        assert f"process {quiet.pid} is not open to inspection" in done.stderr
        assert "SLIPSTREAM_INSPECT=1" in done.stderr
    finally:
        quiet.kill()
        quiet.wait()
    assert slipstream_cli("ps").returncode == 2
    assert slipstream_cli("ps", "not-a-pid").returncode == 2


def test_other_users_are_refused(temp_root: Path) -> None:
    child = Child(temp_root, "run")
    try:
        if os.getuid() != 0:
            # Not root: a process of another user (init) is refused before any socket is tried.
            if os.stat("/proc/1").st_uid == os.getuid():
                pytest.skip("no process of another user to try (pid 1 is this user's)")
            with pytest.raises(inspector.InspectionPermissionError):
                inspector.fetch_task_trees(1)
            return
        # Root: a forked helper becomes `nobody` and tries both the client and a raw connect.
        outcome_r, outcome_w = os.pipe()
        helper = os.fork()
        if helper == 0:
            os.close(outcome_r)
            code = b""
            try:
                os.setgid(65534)
                os.setuid(65534)
                try:
                    inspector.fetch_task_trees(child.pid)
                    code += b"client-answered "
                except inspector.InspectionPermissionError:
                    code += b"client-refused "
                with socket.socket(socket.AF_UNIX) as raw:
                    try:
                        raw.connect(str(inspector.socket_path(child.pid)))
                        code += b"connected"
                    except PermissionError:
                        code += b"connect-refused"
            finally:
                os.write(outcome_w, code)
                os._exit(0)
        os.close(outcome_w)
        os.waitpid(helper, 0)
        with os.fdopen(outcome_r, "rb") as reader:
            assert reader.read() == b"client-refused connect-refused"
    finally:
        child.kill()


def test_the_socket_only_answers_snapshot(temp_root: Path) -> None:
    child = Child(temp_root, "run")
    try:
        before = inspector.fetch_task_trees(child.pid)
        for request in (b"cancel Task-1\n", b"exec print(1)\n", b"x" * 200):
            with socket.socket(socket.AF_UNIX) as raw:
                raw.settimeout(10)
                raw.connect(str(inspector.socket_path(child.pid)))
                raw.sendall(request)
                reply = raw.makefile("rb").read()
            assert b'"error": "unknown request' in reply
        after = inspector.fetch_task_trees(child.pid)
        assert [t.tasks for t in after] == [t.tasks for t in before]
        child.stop()
    finally:
        child.kill()


def test_run_removes_its_socket(temp_root: Path) -> None:
    path = inspector.socket_path(os.getpid())

    async def main() -> bool:
        return path.exists()

    assert slipstream.run(main(), inspect=True)
    assert not path.exists()
    assert not slipstream.run(main())


def test_snapshot_on_the_loop_and_while_it_is_blocked(temp_root: Path, run: Run[None]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        inspector.watch_loop(loop)
        try:
            helper = asyncio.create_task(asyncio.sleep(3600), name="helper")
            trees = await asyncio.to_thread(inspector.fetch_task_trees, os.getpid())
            (tree,) = trees
            assert tree.source == "loop" and tree.loop_thread_stack == ()
            current = asyncio.current_task()
            assert current is not None
            assert {t.name for t in tree.tasks} == {"helper", current.get_name()}
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pending = pool.submit(inspector.fetch_task_trees, os.getpid())
                time.sleep(1.5)  # in-test-block
                (blocked,) = pending.result(timeout=30)
            assert blocked.source == "inspector-thread"
            here = blocked.loop_thread_stack[-1]
            assert here.function.endswith("<locals>.main") and here.filename == __file__
            assert here.lineno == line_of(Path(__file__).read_text(), "in-test-block")
            running = blocked.task(id(current))
            assert running.state == "running"
            helper.cancel()
        finally:
            inspector.unwatch_loop(loop)

    run(main())
    assert not inspector.socket_path(os.getpid()).exists()


def test_private_dir_checks(tmp_path: Path) -> None:
    made = inspector.private_dir(tmp_path / "fresh")
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    with pytest.raises(inspector.InspectionError, match="open to other users"):
        inspector.private_dir(shared)
    link = tmp_path / "link"
    link.symlink_to(made)
    with pytest.raises(inspector.InspectionError, match="not a directory"):
        inspector.private_dir(link)


def test_a_loop_that_is_not_running_is_read_as_it_stands(
    temp_root: Path, loop_factory: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    loop = loop_factory()
    try:
        inspector.watch_loop(loop)
        task = loop.create_task(asyncio.sleep(3600), name="parked")
        (tree,) = inspector.fetch_task_trees(os.getpid())
        assert tree.source == "inspector-thread" and tree.note.startswith(
            "the loop was not running"
        )
        assert [t.name for t in tree.tasks] == ["parked"]
        task.cancel()
        loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
    finally:
        inspector.unwatch_loop(loop)
        loop.close()
    assert not inspector.socket_path(os.getpid()).exists()


@pytest.mark.parametrize("setting", ["", "0"])
def test_off_by_default_and_not_even_imported(temp_root: Path, setting: str) -> None:
    program = (
        "import asyncio, sys, slipstream\n"
        "async def main():\n"
        "    return 'slipstream.observe.inspector' in sys.modules\n"
        "print(slipstream.run(main()))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    env[inspector.ENV_VAR] = setting
    done = subprocess.run(
        [sys.executable, "-c", program],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # With "0" the module is imported to read the setting, but no loop is watched.
    assert done.stdout.split() == (["False"] if setting == "" else ["True"])
    assert not list(temp_root.glob("slipstream-*"))


def test_every_watched_loop_is_shown_with_its_thread(temp_root: Path, run: Run[None]) -> None:
    started = concurrent.futures.Future[int]()
    stop = concurrent.futures.Future[None]()

    def other_thread() -> None:
        async def parked() -> None:
            loop = asyncio.get_running_loop()
            inspector.watch_loop(loop)
            try:
                task = asyncio.create_task(asyncio.sleep(3600), name="in-thread")
                started.set_result(threading.get_native_id())
                await asyncio.wrap_future(stop)
                task.cancel()
            finally:
                inspector.unwatch_loop(loop)

        slipstream.run(parked())

    async def main() -> None:
        loop = asyncio.get_running_loop()
        inspector.watch_loop(loop)
        worker = threading.Thread(target=other_thread)
        worker.start()
        try:
            other_id = await asyncio.wrap_future(started)
            helper = asyncio.create_task(asyncio.sleep(3600), name="in-main")
            trees = await asyncio.to_thread(inspector.fetch_task_trees, os.getpid())
            by_thread = {t.thread_id: {task.name for task in t.tasks} for t in trees}
            assert by_thread[threading.get_native_id()] >= {"in-main"}
            assert "in-thread" in by_thread[other_id]
            text = render_pstree(trees)
            assert f"loop in thread {other_id} (slipstream.event_loop.EventLoop):" in text
            helper.cancel()
        finally:
            stop.set_result(None)
            await asyncio.to_thread(worker.join, 30)
            inspector.unwatch_loop(loop)

    run(main())
    assert not inspector.socket_path(os.getpid()).exists()
