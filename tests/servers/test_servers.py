"""The servers people run, as real processes on loopback, on slipstream and on asyncio.

Each case starts a server with the command the README gives (or asyncio's
counterpart of it), makes real HTTP requests, and checks from inside the
request handler that the running loop is the one asked for, in every worker.
Then it stops the server with a request in flight and checks that the request
still completes and the server exits with the status it gives on asyncio:

* SIGTERM goes to the server's main process, as ``kill PID`` and ``docker
  stop`` send it;
* SIGINT goes to the server's whole process group, as Ctrl+C in a terminal
  sends it.

Every case runs on both loops, so a failure on slipstream alone is ours.  The
exit statuses are the servers' own contracts, measured on asyncio's loop
(``docs/servers.md`` says why uvicorn's single process ends with -15).
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers.asgi_app import LAST_LINE
from tests.servers.harness import (
    HeldRequest,
    ServerProcess,
    free_port,
    get_json,
    gunicorn_command,
    hypercorn_command,
    loop_class_name,
    uvicorn_command,
)

APP = "tests.servers.asgi_app:app"
LOOPS = ("asyncio", "slipstream")
WORKERS_TIMEOUT = 60.0  # seconds to reach every worker: they may boot one after another


@dataclass(frozen=True)
class ServerCase:
    """One server, how to start it on either loop, and what it promises on shutdown."""

    name: str
    command: Callable[[str, int], list[str]]  # (loop name, port) -> argv
    workers: int  # worker processes; 0: the main process serves
    exit_status: dict[signal.Signals, int]  # measured on asyncio's loop

    def __str__(self) -> str:
        return self.name


def uvicorn(loop: str, port: int, *options: str) -> list[str]:
    return uvicorn_command(loop, port, APP, *options)


def gunicorn(loop: str, port: int) -> list[str]:
    return gunicorn_command(loop, port, APP, "--workers", "2")


def hypercorn(loop: str, port: int, *options: str) -> list[str]:
    return hypercorn_command(loop, port, APP, *options)


def aiohttp(loop: str, port: int) -> list[str]:
    return [sys.executable, "-m", "tests.servers.aiohttp_server", str(port), loop]


CASES = [
    # A single uvicorn process re-raises the SIGTERM it handled once it has shut down.
    ServerCase("uvicorn", uvicorn, 0, {signal.SIGTERM: -signal.SIGTERM, signal.SIGINT: 0}),
    ServerCase("uvicorn --workers 2", lambda loop, port: uvicorn(loop, port, "--workers", "2"),
               2, {signal.SIGTERM: 0, signal.SIGINT: 0}),
    ServerCase("gunicorn --workers 2", gunicorn, 2, {signal.SIGTERM: 0, signal.SIGINT: 0}),
    # Hypercorn's default: one worker process.  With more, its supervisor terminates the
    # workers still busy once the first has exited, cutting their requests (on any loop).
    ServerCase("hypercorn", hypercorn, 1, {signal.SIGTERM: 0, signal.SIGINT: 0}),
    ServerCase("hypercorn --workers 0", lambda loop, port: hypercorn(loop, port, "--workers", "0"),
               0, {signal.SIGTERM: 0, signal.SIGINT: 0}),
    ServerCase("aiohttp run_app", aiohttp, 0, {signal.SIGTERM: 0, signal.SIGINT: 0}),
]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[[list[str]], ServerProcess]]:
    """Start server processes; kill whatever is left of them when the test ends."""
    started: list[ServerProcess] = []

    def start(command: list[str]) -> ServerProcess:
        server = ServerProcess(command, tmp_path / f"server-{len(started)}.log")
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def reach_every_worker(server: ServerProcess, port: int, workers: int) -> dict[int, str]:
    """The loop of each worker process, by pid.

    A request to ``/hold`` blocks the loop of the worker that took it, so the
    next connection can only be accepted by a worker not yet held: each round
    holds one more worker, until ``workers`` distinct ones have answered.
    """
    seen: dict[int, str] = {}
    held: list[HeldRequest] = []
    deadline = time.monotonic() + WORKERS_TIMEOUT
    try:
        while len(seen) < workers:
            if time.monotonic() > deadline:
                raise AssertionError(f"reached {len(seen)} of {workers} workers: {seen}\n"
                                     + server.describe())
            request = HeldRequest(port, "/hold")
            seen[request.handler["pid"]] = request.handler["loop"]
            held.append(request)
            if len(held) == workers:  # every hold has ended by the time the last one answered
                for request in held:
                    request.finish()
                held.clear()
    finally:
        for request in held:
            request.finish()
    return seen


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_serves_on_the_loop_and_shuts_down_gracefully(
    case: ServerCase,
    loop: str,
    signum: signal.Signals,
    start_server: Callable[[list[str]], ServerProcess],
) -> None:
    port = free_port()
    server = start_server(case.command(loop, port))
    first = server.wait_until_serving(port)
    assert first["loop"] == loop_class_name(loop), server.describe()

    if case.workers:
        workers = reach_every_worker(server, port, case.workers)
        assert set(workers.values()) == {loop_class_name(loop)}, workers
        assert server.process.pid not in workers, "the main process served, not a worker"
    else:
        assert first["pid"] == server.process.pid

    in_flight = HeldRequest(port, "/slow")
    assert in_flight.handler["loop"] == loop_class_name(loop)
    status = server.stop(signum, to_group=signum == signal.SIGINT)
    assert in_flight.finish() == LAST_LINE, server.describe()
    assert status == case.exit_status[signum], server.describe()


@pytest.mark.parametrize("loop", LOOPS)
def test_uvicorn_reload_restarts_on_the_loop(
    loop: str, tmp_path: Path, start_server: Callable[[list[str]], ServerProcess]
) -> None:
    """``--reload`` serves from a child process and starts a new one on the same loop
    when a watched file changes (uvicorn's polling reloader watches files that existed
    when it started)."""
    watched = tmp_path / "watched"
    watched.mkdir()
    (watched / "module.py").write_text("VERSION = 1\n")
    port = free_port()
    server = start_server(uvicorn(loop, port, "--reload", "--reload-dir", str(watched)))
    before = server.wait_until_serving(port)
    assert before["loop"] == loop_class_name(loop)
    assert before["pid"] != server.process.pid  # the reloader supervises, a child serves

    deadline = time.monotonic() + 60
    after, version = before, 1
    while after["pid"] == before["pid"]:
        assert time.monotonic() < deadline, "no restart after the change\n" + server.describe()
        # The reloader's first scan only records what it finds, and it may come after the
        # server's first answer: change the file again until a new server answers.
        version += 1
        (watched / "module.py").write_text(f"VERSION = {version}\n")
        time.sleep(0.3)
        try:
            after = get_json(port, "/loop")
        except (ConnectionError, TimeoutError):
            pass  # between the old server and the new one
    assert after["loop"] == loop_class_name(loop)
    assert server.stop(signal.SIGTERM, to_group=False) == 0, server.describe()
