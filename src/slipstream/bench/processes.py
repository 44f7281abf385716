"""Starting, pinning and stopping the processes a measurement needs.

The server (the loop under test) runs on one core and its load generator on
another, so they neither share a core's time nor its caches; the parent, which
only waits, floats.  On a single-core machine nothing is pinned.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import slipstream

from .loops import C_REFERENCE, PY_REFERENCE, loop_environment

READY_TIMEOUT = 20.0  # seconds for a server to start and bind


class BenchError(Exception):
    """A measurement failed; the message goes into the result table's cell."""


def cores() -> tuple[int | None, int | None]:
    """(server core, load generator core), or (None, None) with fewer than two cores."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None, None
    return available[0], available[1]


def pinned_to(core: int | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that pins the new process to ``core`` (None: no pinning)."""
    if core is None:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, {core})

    return pin


def child_environment(loop: str | None = None) -> dict[str, str]:
    """The environment for children: this slipstream first on their import path.

    The parent may have found slipstream through ``PYTHONPATH=src`` or a
    checkout on ``sys.path``; the children must import the same one.  A child
    that runs ``loop`` also gets what that loop needs (``loop_environment``).
    """
    env = dict(os.environ)
    if loop is not None:
        env.update(loop_environment(loop))
    package_root = str(Path(slipstream.__file__).resolve().parent.parent)
    existing = env.get("PYTHONPATH")
    env["PYTHONPATH"] = package_root + (os.pathsep + existing if existing else "")
    env.pop("SLIPSTREAM_DEBUG", None)
    env["PYTHONASYNCIODEBUG"] = ""
    return env


def tail(text: str, lines: int = 1) -> str:
    """The last non-empty lines of a child's stderr, for an error cell."""
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " / ".join(kept[-lines:]) or "no output"


@dataclass
class Server:
    """A running server process and the port it listens on."""

    process: subprocess.Popen[str]
    port: int
    stderr: IO[str]

    @property
    def pid(self) -> int:
        return self.process.pid

    def read_line(self, timeout: float) -> str:
        """The server's next stdout line (progress reports of the scale benchmark)."""
        stdout = self.process.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], timeout)
        line = stdout.readline() if ready else ""
        if not line:
            raise BenchError(self.failure("the server stopped reporting"))
        return line.strip()

    def failure(self, what: str) -> str:
        """An explanation of a server failure, with its stderr if it died."""
        try:
            # Its stdout closing may be the first sign of a dying server: let it finish dying.
            self.process.wait(1.0)
        except subprocess.TimeoutExpired:
            return what
        self.stderr.seek(0)
        return f"{what}: server exited {self.process.returncode}: {tail(self.stderr.read())}"

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise BenchError(self.failure("server died"))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.stderr.close()


def start_process(command: list[str], core: int | None, loop: str | None = None) -> Server:
    """Start a server and wait for its ``ready PORT`` line."""
    stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 (the Server closes it in stop())
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=child_environment(loop),
        preexec_fn=pinned_to(core),
    )
    server = Server(process, 0, stderr)
    try:
        line = server.read_line(READY_TIMEOUT)
    except BenchError:
        server.stop()
        raise
    if not line.startswith("ready "):
        server.stop()
        raise BenchError(f"unexpected server output {line!r}")
    server.port = int(line.split()[1])
    return server


def start_server(
    loop: str, kind: str, mode: str = "", target: int = 0, wrapper: Sequence[str] = ()
) -> Server:
    """Start a server on ``loop`` (or a reference server) on the server core.

    ``wrapper`` is a command prefix the server runs under (valgrind, for
    ``slipstream.bench.instructions``).
    """
    core = cores()[0]
    if loop == C_REFERENCE:
        return start_process([*wrapper, c_program("c_echo")], core)
    if loop == PY_REFERENCE:
        return start_process([*wrapper, sys.executable, "-m", "slipstream.bench.py_echo"], core)
    spec = {"task": "server", "loop": loop, "kind": kind, "mode": mode, "target": target}
    command = [*wrapper, sys.executable, "-m", "slipstream.bench.child", json.dumps(spec)]
    return start_process(command, core, loop)


def run_child(
    module: str,
    spec: dict[str, Any],
    core: int | None,
    timeout: float,
    wrapper: Sequence[str] = (),
) -> str:
    """Run ``python -m module SPEC`` to completion (under ``wrapper``, if given); its stdout."""
    try:
        done = subprocess.run(
            [*wrapper, sys.executable, "-m", module, json.dumps(spec)],
            capture_output=True,
            text=True,
            env=child_environment(spec.get("loop")),
            preexec_fn=pinned_to(core),
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"timed out after {timeout:.0f} s") from None
    if done.returncode != 0:
        raise BenchError(f"exit {done.returncode}: {tail(done.stderr)}")
    return done.stdout


_built: dict[str, str] = {}
_build_errors: dict[str, str] = {}


def c_program(name: str) -> str:
    """Compile ``NAME.c`` from this package once per run (gcc -O2, into a temporary directory).

    The C reference echo server and the C load generator are built when the
    benchmark runs rather than shipped as binaries: they are small, and a C
    compiler is the only thing they need.
    """
    if name in _built:
        return _built[name]
    if name in _build_errors:
        raise BenchError(_build_errors[name])
    compiler = shutil.which("gcc") or shutil.which("cc")
    source = Path(__file__).with_name(f"{name}.c")
    if compiler is None:
        _build_errors[name] = f"no C compiler (gcc) found: {name} skipped"
        raise BenchError(_build_errors[name])
    directory = tempfile.mkdtemp(prefix="slipstream-bench-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    binary = os.path.join(directory, name)
    done = subprocess.run(
        [compiler, "-O2", "-o", binary, str(source)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        _build_errors[name] = f"compiling {source.name} failed: {tail(done.stderr)}"
        raise BenchError(_build_errors[name])
    _built[name] = binary
    return binary


def c_compiler_available() -> bool:
    return shutil.which("gcc") is not None or shutil.which("cc") is not None
