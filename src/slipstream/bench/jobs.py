"""What the benchmark measures: jobs, the metrics (table rows) each one yields.

A *job* is one measurement of one loop: it starts whatever processes it needs,
returns a value for each of its metrics, and cleans up.  A failure raises
:class:`~slipstream.bench.processes.BenchError` (or anything else); the runner
turns it into error cells for that loop, and the run goes on.
"""

from __future__ import annotations

import json
import re
import resource
import shutil
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from . import micro
from .loops import REFERENCES
from .processes import BenchError, c_program, cores, pinned_to, run_child, start_server
from .processes import Server as ServerProcess


@dataclass(frozen=True)
class Settings:
    """How long and how big: the run's options that jobs read."""

    duration: float = 2.0  # measured seconds per echo / HTTP measurement
    warmup: float = 0.5  # seconds of load before the measured window
    micro_scale: float = 1.0  # fraction of each micro-benchmark's operation count
    connections: int = 10
    http_connections: int = 50
    idle_connections: int = 10_000


@dataclass(frozen=True)
class Metric:
    """One row of the result table."""

    key: str  # e.g. "echo.protocol.1k.rps"
    group: str  # micro, echo, http, scale
    label: str
    unit: str
    higher_is_better: bool


@dataclass
class Measurement:
    """A job's result for one loop: a value per metric key, and notes (e.g. load generator CPU)."""

    values: dict[str, float]
    notes: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    """A measurement to make on each of ``loops`` in every round."""

    key: str  # selectable with --only (by this key or a prefix: "echo", "echo.protocol")
    label: str
    metrics: tuple[Metric, ...]
    run: Callable[[str, Settings], Measurement]
    extra_loops: tuple[str, ...] = ()  # reference servers beside the event loops


# --- micro ----------------------------------------------------------------------------------


def run_micro_job(loop: str, settings: Settings) -> Measurement:
    names = [bench.name for bench in micro.BENCHMARKS]
    spec = {"task": "micro", "loop": loop, "names": names, "scale": settings.micro_scale}
    output = run_child("slipstream.bench.child", spec, cores()[0], timeout=300)
    for line in output.splitlines():
        if line.startswith("result "):
            values: dict[str, float] = json.loads(line[len("result ") :])
            return Measurement({f"micro.{name}": ns for name, ns in values.items()})
    raise BenchError(f"no result line in {output[-200:]!r}")


MICRO_JOB = Job(
    "micro",
    "micro-benchmarks",
    tuple(
        Metric(f"micro.{bench.name}", "micro", bench.label, "ns/op", False)
        for bench in micro.BENCHMARKS
    ),
    run_micro_job,
)


# --- echo -----------------------------------------------------------------------------------

ECHO_MODES = {"protocol": "Protocol", "streams": "streams", "sock": "sock_recv/sendall"}
ECHO_SIZES = {"1k": 1024, "10k": 10 * 1024, "100k": 100 * 1024}


def run_load_generator(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run the C load generator (or, without a C compiler, the Python one) on its core."""
    try:
        binary = c_program("c_loadgen")
    except BenchError:
        output = run_child("slipstream.bench.loadgen", spec, cores()[1], timeout)
    else:
        arguments = [
            str(spec[name])
            for name in ("port", "connections", "size", "warmup", "duration", "server_pid")
        ]
        arguments.append(spec.get("mode", "echo"))
        try:
            done = subprocess.run(
                [binary, *arguments],
                capture_output=True,
                text=True,
                preexec_fn=pinned_to(cores()[1]),
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"load generator timed out after {timeout:.0f} s") from None
        if done.returncode != 0 or not done.stdout.strip():
            raise BenchError(f"load generator exit {done.returncode}: {done.stderr.strip()[-200:]}")
        output = done.stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def load_spec(
    server: ServerProcess,
    connections: int,
    size: int,
    warmup: float,
    duration: float,
    mode: str = "echo",
) -> dict[str, Any]:
    """What :func:`run_load_generator` is to do to ``server``.

    ``mode`` is the load generator's: ``echo`` (messages of ``size`` bytes) or
    ``http`` (keep-alive GET requests).
    """
    return {
        "host": "127.0.0.1",
        "port": server.port,
        "server_pid": server.pid,
        "connections": connections,
        "size": size,
        "warmup": warmup,
        "duration": duration,
        "mode": mode,
    }


def drive_load(
    server: ServerProcess, settings: Settings, connections: int, size: int = 0, mode: str = "echo"
) -> Measurement:
    """Run the load generator against ``server``; req/s and server µs per round trip."""
    spec = load_spec(server, connections, size, settings.warmup, settings.duration, mode)
    timeout = settings.warmup + settings.duration + 30
    result = run_load_generator(spec, timeout)
    if "error" in result:
        raise BenchError(server.failure(result["error"]))
    server.check_alive()
    requests, elapsed = result["requests"], result["elapsed"]
    if requests <= 0:
        raise BenchError("no round trip completed in the measured window")
    return Measurement(
        {"rps": requests / elapsed, "cpu": result["server_cpu"] / requests * 1e6},
        {
            "loadgen_cpu": result["client_cpu"] / elapsed,
            "server_cpu": result["server_cpu"] / elapsed,
        },
    )


# (connections, message size, load generator mode) for a run's settings
LoadSpec = Callable[[Settings], tuple[int, int, str]]


def under_load(
    prefix: str, label: str, group: str, start: Callable[[str], ServerProcess], load: LoadSpec
) -> Job:
    """A job that starts a server on the loop and drives it: req/s and server µs per request.

    ``load(settings)`` is the load generator's (connections, message size, mode).
    """

    def run(loop: str, settings: Settings) -> Measurement:
        server = start(loop)
        try:
            connections, size, mode = load(settings)
            measured = drive_load(server, settings, connections, size, mode)
        finally:
            server.stop()
        return Measurement(
            {f"{prefix}.{key}": value for key, value in measured.values.items()}, measured.notes
        )

    return Job(
        prefix,
        label,
        (
            Metric(f"{prefix}.rps", group, label, "req/s", True),
            Metric(f"{prefix}.cpu", f"{group}-cpu", label + " server CPU", "µs/req", False),
        ),
        run,
    )


def echo_job(mode: str, size_name: str) -> Job:
    size = ECHO_SIZES[size_name]
    job = under_load(
        f"echo.{mode}.{size_name}",
        f"echo {ECHO_MODES[mode]} {size_name.replace('k', ' KiB')}",
        "echo",
        lambda loop: start_server(loop, "echo", mode),
        lambda settings: (settings.connections, size, "echo"),
    )
    return replace(job, extra_loops=REFERENCES) if mode == "protocol" else job


# --- web frameworks -----------------------------------------------------------------------------

WEB_SERVERS = {"uvicorn": "uvicorn+httptools ASGI hello", "aiohttp": "aiohttp hello handler"}


def web_job(name: str) -> Job:
    """A web framework's hello server (``web_servers.py``) under the C load generator's HTTP mode.

    ``http_connections`` keep-alive connections with one request in flight each,
    as the wrk row has.
    """
    return under_load(
        f"web.{name}",
        f"{WEB_SERVERS[name]}, {Settings.http_connections} conns",
        "web",
        lambda loop: start_server(loop, name),
        lambda settings: (settings.http_connections, 0, "http"),
    )


# --- HTTP under wrk ---------------------------------------------------------------------------

WRK_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(m?s)", re.MULTILINE)


def run_http_job(loop: str, settings: Settings) -> Measurement:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise BenchError("wrk is not installed (Debian: apt-get install wrk)")
    from .loadgen import process_cpu_seconds

    server = start_server(loop, "http")
    try:
        # A short warm-up run, then the measured one with the server's CPU read around it.
        url = f"http://127.0.0.1:{server.port}/"
        connections = str(settings.http_connections)
        command = [wrk, "-t1", "-c", connections, "--latency", url]
        warm = f"{max(1, round(settings.warmup))}s"
        subprocess.run(
            [*command, "-d", warm],
            capture_output=True,
            check=False,
            preexec_fn=pinned_to(cores()[1]),
            timeout=60,
        )
        cpu_before = process_cpu_seconds(server.pid)
        done = subprocess.run(
            [*command, "-d", f"{max(1, round(settings.duration))}s"],
            capture_output=True,
            text=True,
            check=False,
            preexec_fn=pinned_to(cores()[1]),
            timeout=120,
        )
        cpu = process_cpu_seconds(server.pid) - cpu_before
        server.check_alive()
    finally:
        server.stop()
    match = WRK_TOTAL.search(done.stdout)
    if done.returncode != 0 or match is None:
        raise BenchError(f"wrk failed: {(done.stderr or done.stdout).strip()[-200:]}")
    if "Non-2xx" in done.stdout or "Socket errors" in done.stdout:
        raise BenchError("wrk reported errors: " + done.stdout.strip().splitlines()[-3])
    requests = int(match.group(1))
    seconds = float(match.group(2)) / (1000 if match.group(3) == "ms" else 1)
    if requests <= 0:
        raise BenchError("wrk completed no request")
    return Measurement({"http.rps": requests / seconds, "http.cpu": cpu / requests * 1e6})


HTTP_JOB = Job(
    "http",
    "HTTP hello (wrk)",
    (
        Metric("http.rps", "http", "HTTP hello, wrk 50 conns", "req/s", True),
        Metric("http.cpu", "http", "HTTP hello server CPU", "µs/req", False),
    ),
    run_http_job,
)


# --- scale: many idle connections --------------------------------------------------------------


def raise_fd_limit(needed: int) -> None:
    """Raise this process's soft RLIMIT_NOFILE towards ``needed`` (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < needed:
        raise BenchError(f"RLIMIT_NOFILE hard limit {hard} is below the {needed} fds needed")


def run_scale_job(loop: str, settings: Settings) -> Measurement:
    target = settings.idle_connections
    raise_fd_limit(target + 100)  # children inherit the raised limit: the server needs it too
    server = start_server(loop, "scale", target=target)
    clients: list[socket.socket] = []
    try:
        accepted = 0
        done: list[str] = []
        # Keep at most ``window`` connections waiting in the accept queue (see IdleCounter).
        window = 2000
        for _ in range(target):
            while len(clients) - accepted >= window:
                line = server.read_line(30)
                if line.startswith("done"):
                    done = line.split()
                    break
                accepted = int(line.split()[1])
            clients.append(socket.create_connection(("127.0.0.1", server.port)))
        while not done:
            line = server.read_line(60)
            if line.startswith("done"):
                done = line.split()
        server.check_alive()
    finally:
        for client in clients:
            client.close()
        server.stop()
    count, seconds, rss_before, rss_after = int(done[1]), float(done[2]), int(done[3]), int(done[4])
    return Measurement(
        {
            "scale.rss": (rss_after - rss_before) / count / 1024,
            "scale.accept": count / seconds if seconds > 0 else float("nan"),
        }
    )


SCALE_JOB = Job(
    "scale",
    "idle connections",
    (
        Metric("scale.rss", "scale", "idle conns: RSS per connection", "KiB/conn", False),
        Metric("scale.accept", "scale", "idle conns: accept rate", "conn/s", True),
    ),
    run_scale_job,
)


def all_jobs() -> list[Job]:
    """Every job, in the order of the table."""
    jobs = [MICRO_JOB]
    jobs += [echo_job(mode, size) for mode in ECHO_MODES for size in ECHO_SIZES]
    jobs += [HTTP_JOB, *(web_job(name) for name in WEB_SERVERS), SCALE_JOB]
    return jobs


def matches(job: Job, selector: str) -> bool:
    """Whether ``selector`` names ``job``: each of its dotted parts is one of the job key's.

    ``echo`` picks all echo jobs, ``echo.1k`` the three 1 KiB ones, ``echo.sock.100k`` one.
    """
    return set(selector.split(".")) <= set(job.key.split("."))


def select_jobs(only: list[str] | None) -> list[Job]:
    """The jobs that one of the ``only`` selectors names (every job when None)."""
    jobs = all_jobs()
    if not only:
        return jobs
    chosen = [job for job in jobs if any(matches(job, selector) for selector in only)]
    unknown = [selector for selector in only if not any(matches(job, selector) for job in jobs)]
    if unknown:
        raise ValueError(
            f"unknown benchmark {', '.join(unknown)} (try: micro, echo, "
            "echo.protocol, echo.streams.1k, http, web, web.uvicorn, scale)"
        )
    return chosen
