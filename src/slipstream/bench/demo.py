"""The example half of ``python -m slipstream demo``: every script in examples/, on slipstream.

Most examples are programs that run and end, but not all of them: ``webserver.py`` serves
until a signal stops it, ``asgi_app.py`` is an application for a server to import, and
``db.py`` needs a PostgreSQL server. Run blindly, one loop over the directory hangs on the
first and proves nothing with the other two. So each example has a way to be shown
(``KINDS``, data rather than branches in the runner):

- ``script``: run it and wait (the default, also for examples added later);
- ``server``: start it on a free port, ask it a few pages as a browser would, stop it with
  SIGINT as Ctrl+C would, and show what it printed;
- ``asgi``: serve it with uvicorn on slipstream (the README's command) and ask it one page.

Whatever the kind, an example runs under a deadline: the demo reports a hang as a failure
and goes on, it never waits for ever. An example whose libraries are not installed, or that
needs a database nobody named, is skipped with a line saying what it needs; the demo
installs its libraries (``pip install slipstream[demo]``, what scripts/demo.sh does).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
DEADLINE = 180.0  # seconds an example may take; the slowest (cpu_bound.py) takes ~5
STOP_GRACE = 30.0  # seconds a server has to stop after SIGINT before it is killed


@dataclass(frozen=True)
class Example:
    """How the demo shows one example."""

    kind: str = "script"  # "script", "server" or "asgi": the key of its runner in RUNNERS
    needs: tuple[str, ...] = ()  # modules it imports beyond the standard library
    needs_env: str = ""  # an environment variable it cannot run without ("" for none)
    env_hint: str = ""  # what that variable names, for the line that says it is missing
    paths: tuple[str, ...] = ("/",)  # what a server example is asked


KINDS: dict[str, Example] = {
    "asgi_app.py": Example(kind="asgi", needs=("uvicorn", "httptools"), paths=("/",)),
    "webserver.py": Example(kind="server", needs=("aiohttp",), paths=("/", "/hello/demo", "/loop")),
    "scrape.py": Example(needs=("aiohttp", "httpx")),
    "db.py": Example(
        needs=("asyncpg",), needs_env="DATABASE_URL", env_hint="a PostgreSQL server's DSN"
    ),
}


@dataclass
class Outcome:
    """What became of one example: ran (and how), skipped (and why)."""

    ok: bool
    note: str = ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def get(port: int, path: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as answer:
        body: bytes = answer.read()
    return f"GET {path} -> {answer.status} {body.decode(errors='replace').strip()}"


def wait_until_answering(port: int, process: subprocess.Popen[bytes], deadline: float) -> None:
    """Until the server on *port* accepts a connection; raise if it died or the time ran out."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("the server did not start answering in time")


def stop(process: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGINT (Ctrl+C), then SIGKILL if it outlives *timeout*; its exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def serve_and_ask(command: list[str], port: int, example: Example, cwd: Path) -> Outcome:
    """Start a server, ask it ``example.paths``, stop it as Ctrl+C would; print both sides."""
    # The server's output goes to a file, not a pipe: nobody reads a pipe while
    # the server runs, and a chatty server would block on a full one.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our own Ctrl+C stays ours: the server stops when we say
        )
        asked: list[str] = []
        failure = ""
        try:
            wait_until_answering(port, process, time.monotonic() + DEADLINE)
            asked = [get(port, path) for path in example.paths]
        except (OSError, RuntimeError) as error:  # TimeoutError and URLError are OSErrors
            failure = f"{type(error).__name__}: {error}"
        finally:
            status = stop(process, timeout=STOP_GRACE)
        log.seek(0)
        output = log.read().decode(errors="replace")
    print(output, end="" if output.endswith("\n") or not output else "\n")
    for line in asked:
        print(f"  (the demo) {line}")
    if failure:
        return Outcome(False, failure)
    # A server stopped by SIGINT exits 0 once it has shut down cleanly (uvicorn and our
    # webserver.py both do); anything else is worth a failure line.
    return Outcome(status == 0, "" if status == 0 else f"exit status {status} after SIGINT")


def run_script(script: Path, example: Example) -> Outcome:
    try:
        done = subprocess.run(
            [sys.executable, "-m", "slipstream", str(script)],
            cwd=script.parent.parent,
            timeout=DEADLINE,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Outcome(False, f"still running after {DEADLINE:.0f} s: stopped")
    return Outcome(done.returncode == 0, f"exit status {done.returncode}")


def run_server(script: Path, example: Example) -> Outcome:
    port = free_port()
    command = [sys.executable, "-m", "slipstream", str(script), "--port", str(port)]
    return serve_and_ask(command, port, example, cwd=script.parent.parent)


def run_asgi(script: Path, example: Example) -> Outcome:
    port = free_port()
    # Imported as a module of its folder, from the folder's parent (the
    # README's command, run from the repository's root).
    app = f"{script.parent.name}.{script.stem}:app"
    command = [sys.executable, "-m", "uvicorn", app, "--port", str(port)]
    command += ["--loop", "slipstream:new_event_loop", "--log-level", "warning"]
    return serve_and_ask(command, port, example, cwd=script.parent.parent)


# What each kind's heading shows: the command a reader would type to do the same.
HEADINGS = {
    "script": "python -m slipstream {folder}/{name}",
    "server": "python -m slipstream {folder}/{name} --port PORT  (then GET {paths}; Ctrl+C)",
    "asgi": "uvicorn {folder}.{stem}:app --loop slipstream:new_event_loop  (then GET {paths})",
}

RUNNERS: dict[str, Callable[[Path, Example], Outcome]] = {
    "script": run_script,
    "server": run_server,
    "asgi": run_asgi,
}


def missing(example: Example) -> str:
    """Why *example* cannot run here, or "" if it can."""
    absent = [name for name in example.needs if importlib.util.find_spec(name) is None]
    if absent:
        return f"needs {', '.join(absent)} (pip install {' '.join(absent)})"
    if example.needs_env and not os.environ.get(example.needs_env):
        hint = f", {example.env_hint}" if example.env_hint else ""
        return f"needs {example.needs_env}{hint}"
    return ""


def run_examples(directory: Path = EXAMPLES) -> int:
    """Show every example of *directory*; 0 if none failed (skipped ones do not), else 1."""
    status = 0
    outcomes: dict[str, str] = {}
    for script in sorted(directory.glob("*.py")):
        example = KINDS.get(script.name, Example())
        heading = HEADINGS[example.kind].format(
            folder=directory.name,
            name=script.name,
            stem=script.stem,
            paths=", ".join(example.paths),
        )
        print(f"\n\033[1m==> {heading}\033[0m", flush=True)
        reason = missing(example)
        if reason:
            print(f"skipped: {reason}")
            outcomes[script.name] = f"skipped ({reason})"
            continue
        outcome = RUNNERS[example.kind](script, example)
        sys.stdout.flush()
        if not outcome.ok:
            print(f"{script.name} failed: {outcome.note}")
            status = 1
        outcomes[script.name] = "ok" if outcome.ok else f"FAILED ({outcome.note})"
    print("\n\033[1m==> the examples\033[0m")
    for name, what in outcomes.items():
        print(f"  {name:<24} {what}")
    return status
