"""Subprocesses: return codes, protocol order, reaping and argument errors as on asyncio."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

Run = Callable[[Coroutine[Any, Any, Any]], Any]

PY = sys.executable


def _assert_reaped(pid: int, timeout: float = 5.0) -> None:
    """No zombie left: the pid is gone from /proc (someone waited for it)."""
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}"):
        if time.monotonic() > deadline:
            with open(f"/proc/{pid}/stat") as f:
                raise AssertionError(f"child {pid} not reaped: {f.read()}")
        time.sleep(0.01)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("pass", 0),
        ("import sys; sys.exit(7)", 7),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", -signal.SIGKILL),
        ("import os, signal; os.kill(os.getpid(), signal.SIGTERM)", -signal.SIGTERM),
    ],
)
def test_return_codes(run: Run, code: str, expected: int) -> None:
    async def main() -> tuple[int, int | None, int]:
        proc = await asyncio.create_subprocess_exec(PY, "-c", code)
        returncode = await proc.wait()
        return returncode, proc.returncode, proc.pid

    returncode, attribute, pid = run(main())
    assert returncode == attribute == expected
    _assert_reaped(pid)


@pytest.mark.parametrize(
    ("action", "expected"),
    [("kill", -signal.SIGKILL), ("terminate", -signal.SIGTERM), ("hup", -signal.SIGHUP)],
)
def test_killed_by_signal(run: Run, action: str, expected: int) -> None:
    async def main() -> tuple[int, int]:
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", "import time; print('up', flush=True); time.sleep(60)", stdout=-1
        )
        assert proc.stdout is not None
        assert await proc.stdout.readline() == b"up\n"
        if action == "kill":
            proc.kill()
        elif action == "terminate":
            proc.terminate()
        else:
            proc.send_signal(signal.SIGHUP)
        returncode = await proc.wait()
        # Once the transport has finished, the process is gone for good.
        with pytest.raises(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        return returncode, proc.pid

    returncode, pid = run(main())
    assert returncode == expected
    _assert_reaped(pid)


def test_shell_and_env(run: Run) -> None:
    async def main() -> tuple[bytes, bytes, int]:
        proc = await asyncio.create_subprocess_shell(
            "echo $SLIP_VALUE; echo oops >&2; exit 3",
            stdout=-1,
            stderr=-1,
            env={"SLIP_VALUE": "from env", "PATH": os.environ.get("PATH", "")},
        )
        out, err = await proc.communicate()
        return out, err, proc.returncode  # type: ignore[return-value]

    assert run(main()) == (b"from env\n", b"oops\n", 3)


def test_communicate_large_input(run: Run) -> None:
    data = os.urandom(4 * 1024 * 1024)

    async def main() -> bytes:
        proc = await asyncio.create_subprocess_exec(
            PY,
            "-c",
            "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read())",
            stdin=-1,
            stdout=-1,
        )
        out, _ = await proc.communicate(data)
        return out

    assert run(main()) == data


class EventLog(asyncio.SubprocessProtocol):
    def __init__(self) -> None:
        self.events: list[Any] = []
        self.done = asyncio.get_running_loop().create_future()
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.events.append("made")

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.events.append(("data", fd, data))

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self.events.append(("pipe_lost", fd, exc))

    def process_exited(self) -> None:
        self.events.append(("exited", self.transport.get_returncode()))

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append(("lost", exc))
        self.done.set_result(None)


def test_protocol_order(run: Run) -> None:
    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        code = "import sys; sys.stdout.write('out'); sys.stdout.flush(); sys.stderr.write('err')"
        transport, proto = await loop.subprocess_exec(EventLog, PY, "-c", code, stdin=None)
        assert proto.events == ["made"]  # connection_made ran before the call returned
        await proto.done
        assert transport.get_pipe_transport(0) is None
        assert transport.get_returncode() == 0
        transport.close()
        with pytest.raises(ProcessLookupError):
            transport.kill()
        return proto.events

    events = run(main())
    assert events[0] == "made"
    assert events[-1] == ("lost", None)
    middle = events[1:-1]
    assert sorted(middle, key=repr) == sorted(
        [
            ("data", 1, b"out"),
            ("data", 2, b"err"),
            ("pipe_lost", 1, None),
            ("pipe_lost", 2, None),
            ("exited", 0),
        ],
        key=repr,
    )
    for fd in (1, 2):
        per_fd = [e[0] for e in middle if isinstance(e, tuple) and e[1] == fd and e[0] != "exited"]
        assert per_fd == ["data", "pipe_lost"]


def test_no_pipes_finishes_on_exit(run: Run) -> None:
    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.subprocess_shell(
            EventLog, "exit 5", stdin=None, stdout=None, stderr=None
        )
        await proto.done
        transport.close()
        return proto.events

    assert run(main()) == ["made", ("exited", 5), ("lost", None)]


def test_close_kills_a_running_child(run: Run) -> None:
    async def main() -> tuple[int | None, int]:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.subprocess_exec(
            EventLog, PY, "-c", "import time; time.sleep(60)"
        )
        pid = transport.get_pid()
        transport.close()
        assert transport.is_closing()
        await asyncio.wait_for(proto.done, 10)
        return transport.get_returncode(), pid

    returncode, pid = run(main())
    assert returncode == -signal.SIGKILL
    _assert_reaped(pid)


def test_transport_api(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.subprocess_exec(EventLog, "cat")
        assert isinstance(transport.get_pid(), int)
        assert transport.get_returncode() is None
        assert transport.get_extra_info("subprocess").pid == transport.get_pid()
        stdin: Any = transport.get_pipe_transport(0)
        stdin.write(b"echo")
        await asyncio.sleep(0.05)
        stdin.close()
        await proto.done
        assert ("data", 1, b"echo") in proto.events
        assert f"pid={transport.get_pid()}" in repr(transport)
        transport.close()

    run(main())


def test_reaping_without_pidfd(
    run: Run, loop_factory: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where os.pidfd_open is missing, a waiting thread reaps the child instead."""
    if loop_factory is not asyncio.SelectorEventLoop:
        # (asyncio 3.12+ picks its pidfd watcher by looking for os.pidfd_open
        # but then calls it anyway: its reference run keeps the function.)
        monkeypatch.delattr(os, "pidfd_open", raising=False)

    async def main() -> tuple[list[int], list[int]]:
        procs = [
            await asyncio.create_subprocess_exec(PY, "-c", f"import sys; sys.exit({i})")
            for i in range(5)
        ]
        codes = [await p.wait() for p in procs]
        return codes, [p.pid for p in procs]

    codes, pids = run(main())
    assert codes == [0, 1, 2, 3, 4]
    for pid in pids:
        _assert_reaped(pid)


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_children_reaped_after_loop_closes(loop_factory: Callable[[], Any]) -> None:
    """A child still running when its loop closes does not stay a zombie.

    (asyncio 3.12+ fails this: its pidfd child watcher forgets such a child.)
    """
    if loop_factory is asyncio.SelectorEventLoop and sys.version_info >= (3, 12):
        pytest.skip("asyncio's pidfd child watcher leaves this child a zombie")

    async def main() -> int:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.subprocess_exec(
            asyncio.SubprocessProtocol,
            PY,
            "-c",
            "import time; time.sleep(0.2)",
            stdin=None,
            stdout=None,
            stderr=None,
        )
        pid: int = transport.get_pid()
        return pid

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        pid = runner.run(main())
    _assert_reaped(pid)


def test_spawn_failure_propagates(run: Run) -> None:
    async def main() -> type[BaseException]:
        with pytest.raises(OSError) as info:
            await asyncio.create_subprocess_exec("/nonexistent/program")
        return type(info.value)

    assert run(main()) is FileNotFoundError


def test_cancelled_while_connecting_kills_child(run: Run) -> None:
    async def main() -> None:
        task = asyncio.ensure_future(
            asyncio.create_subprocess_exec(
                PY, "-c", "import time; time.sleep(60)", stdin=-1, stdout=-1
            )
        )
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())


Failure = tuple[type[BaseException], str]


async def _failure(coro: Coroutine[Any, Any, Any]) -> Failure:
    try:
        await coro
    except Exception as exc:
        return type(exc), str(exc)
    raise AssertionError("no exception")


def _invalid_calls(loop: Any) -> list[Coroutine[Any, Any, Any]]:
    # (``loop`` is Any: the type stubs already reject these calls statically.)
    proto = asyncio.SubprocessProtocol
    return [
        loop.subprocess_exec(proto, "true", universal_newlines=True),
        loop.subprocess_exec(proto, "true", shell=True),
        loop.subprocess_exec(proto, "true", bufsize=4096),
        loop.subprocess_exec(proto, "true", text=True),
        loop.subprocess_exec(proto, "true", encoding="utf-8"),
        loop.subprocess_exec(proto, "true", errors="strict"),
        loop.subprocess_exec(proto, 42),
        loop.subprocess_shell(proto, ["ls", "-l"]),
        loop.subprocess_shell(proto, "true", universal_newlines=True),
        loop.subprocess_shell(proto, "true", shell=False),
        loop.subprocess_shell(proto, "true", bufsize=1),
        loop.subprocess_shell(proto, "true", text=True),
        loop.subprocess_shell(proto, "true", encoding="utf-8"),
        loop.subprocess_shell(proto, "true", errors="strict"),
    ]


def _invalid_argument_errors(loop: asyncio.AbstractEventLoop) -> list[Failure]:
    async def main() -> list[Failure]:
        running = asyncio.get_running_loop()
        return [await _failure(call) for call in _invalid_calls(running)]

    return loop.run_until_complete(main())


def test_argument_errors_equal_asyncio(loop_factory: Callable[[], Any]) -> None:
    reference_loop = asyncio.SelectorEventLoop()
    try:
        expected = _invalid_argument_errors(reference_loop)
    finally:
        reference_loop.close()
    loop = loop_factory()
    try:
        assert _invalid_argument_errors(loop) == expected
    finally:
        loop.close()
    assert expected[0] == (ValueError, "universal_newlines must be False")
    assert expected[6][0] is TypeError  # from Popen, for a program that is not a path
