"""Start a real server as a process on loopback and talk HTTP to it, from a test.

``ServerProcess`` runs a server's command line with its output in a file, waits
until ``GET /loop`` answers (polling: a loaded machine may take seconds to
start two workers), and stops it with a signal.  ``SlowRequest`` holds a
request to ``/slow`` open: once its first line has arrived the handler is
running, so a signal sent then lands with that request in flight.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import slipstream
from tests.servers.asgi_app import FIRST_LINE_LENGTH

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0  # seconds for a server to answer its first request (two workers, loaded CPU)
STOP_TIMEOUT = 30.0  # seconds for a server to exit after the signal
REQUEST_TIMEOUT = 10.0


def loop_class_name(loop: str) -> str:
    """What a handler reports running on ``loop`` ("asyncio": asyncio's own, or "slipstream")."""
    cls = slipstream.EventLoop if loop == "slipstream" else asyncio.SelectorEventLoop
    return f"{cls.__module__}.{cls.__qualname__}"


# The servers' command lines: on slipstream as the README gives them, on asyncio the same
# server with asyncio's loop; each binds 127.0.0.1:port and serves ``app`` ("module:attr").


def uvicorn_command(loop: str, port: int, app: str, *options: str) -> list[str]:
    loop_option = "slipstream:new_event_loop" if loop == "slipstream" else "asyncio"
    return [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
            "--loop", loop_option, *options]


def gunicorn_command(loop: str, port: int, app: str, *options: str) -> list[str]:
    worker = ("slipstream.servers.gunicorn.SlipstreamWorker" if loop == "slipstream"
              else "tests.servers.reference_worker.AsyncioWorker")
    # --no-control-socket: gunicorn's control socket is one path per user ($HOME/.gunicorn),
    # which two servers at once would contend for.
    return [sys.executable, "-m", "gunicorn", "-k", worker, "--no-control-socket",
            "--bind", f"127.0.0.1:{port}", *options, app]


def hypercorn_command(loop: str, port: int, app: str, *options: str) -> list[str]:
    module = "slipstream.servers.hypercorn" if loop == "slipstream" else "hypercorn"
    return [sys.executable, "-m", module, "--bind", f"127.0.0.1:{port}", *options, app]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def get_json(port: int, path: str) -> Any:
    """``GET path`` on a new connection (so each request may land on another worker)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise AssertionError(f"GET {path}: {response.status} {body!r}")
        return json.loads(body)
    finally:
        connection.close()


class ServerProcess:
    """A server process started from ``command`` in the repository's root."""

    def __init__(self, command: list[str], log_path: Path, cwd: Path = ROOT) -> None:
        self.command = command
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        """What the server printed so far (its stdout and stderr)."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def describe(self) -> str:
        return f"command: {' '.join(self.command)}\n--- output\n{self.output()}"

    def wait_until_serving(self, port: int, timeout: float = START_TIMEOUT) -> dict[str, Any]:
        """Poll ``GET /loop`` until the server answers; return that first answer."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited with {self.process.returncode}\n"
                                     + self.describe())
            try:
                answer: dict[str, Any] = get_json(port, "/loop")
                return answer
            except (ConnectionError, TimeoutError, http.client.HTTPException):
                pass  # not listening yet, or a worker is still starting
            if time.monotonic() > deadline:
                raise AssertionError(f"no answer on port {port} in {timeout} s\n" + self.describe())
            time.sleep(0.05)

    def stop(self, signum: signal.Signals, *, to_group: bool, timeout: float = STOP_TIMEOUT) -> int:
        """Send ``signum`` to the server's main process, or to its whole process group (as
        Ctrl+C in a terminal does); return the exit status (negative: killed by a signal)."""
        if to_group:
            os.killpg(self.process.pid, signum)
        else:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {timeout} s after {signum.name}\n"
                                 + self.describe()) from None

    def close(self) -> None:
        """Kill the server and its workers if a test left them running; close the log."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # the group is gone: the server and all its workers exited
        self.process.wait()
        self._log.close()


class HeldRequest:
    """``GET /slow`` or ``/hold`` on its own connection, read up to the end of its first line."""

    def __init__(self, port: int, path: str) -> None:
        self.path = path
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
        self.connection.request("GET", path)
        self.response = self.connection.getresponse()
        line = self.response.read(FIRST_LINE_LENGTH)
        if self.response.status != 200 or len(line) != FIRST_LINE_LENGTH:
            raise AssertionError(f"GET {path}: {self.response.status} {line!r}")
        self.handler: dict[str, Any] = json.loads(line)
        """The first line: the loop and process id of the handler that is running."""

    def finish(self) -> bytes:
        """The rest of the body (``asgi_app.LAST_LINE`` when the handler ran to its end)."""
        try:
            return self.response.read()
        except http.client.IncompleteRead as error:
            return error.partial
        finally:
            self.connection.close()
