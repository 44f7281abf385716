"""The cost of an echo round trip or a scheduling operation in instructions: what noise cannot move.

``python -m slipstream.bench.instructions`` runs echo servers, each loop's and
the reference servers, under valgrind's callgrind and reports how many
*user-space* instructions the server executed per round trip; with ``--only
micro`` (or ``micro.NAME``) it counts the instructions per operation of the
scheduling micro-benchmarks of ``bench`` instead.

Why a second measurement beside ``bench``'s CPU time: on a shared two-vCPU
VM, CPU time per round trip moves by 10-20% between runs (neighbours, cache
and frequency effects), so a change worth 3% is invisible unless many
interleaved rounds agree.  Callgrind counts instructions, which are the same
for the same binary, input and environment whatever else the machine is doing.
It does not see the kernel, and that is the point: every server makes the same
system calls for an echo (the C server's kernel share is the same for all), so
what differs between loops -- their own overhead -- is exactly what is
counted.  Instructions are not time (a cache miss or a syscall costs more than
an add), so this ranks overheads and measures changes to them; ``bench`` stays
the measurement of speed.

How: the server starts under ``valgrind --tool=callgrind --instr-atstart=no``
(instrumentation off, so start-up is not counted); the load generator warms it
up; ``callgrind_control`` switches instrumentation on, runs a short settling
window, zeroes the counters, and after the measured window dumps them.  The
dump's total over the round trips the load generator completed in that window
is the figure.  Each measurement is a single run: repeating it gives the same
number to within a fraction of a percent.

One caveat shapes what it can compare.  Under callgrind the server runs some
fifty times slower while the load generator does not, so the server is always
saturated: every poll returns all ten connections, and a request is already
waiting whenever the server looks for one.  The Protocol rows take the same
path at any speed (readiness, recv, data_received, write), so their counts
hold; rows whose path depends on timing do not.  A ``sock_recv`` made right
after the reply was sent finds its next request already there only under
callgrind, so slipstream, which waits at once on a socket its last read
emptied (see ``sock_recv``), is counted on a path it rarely takes at full
speed.  So the Protocol rows are counted that way (``--method saturated``).

The streams and sock_* rows are counted in *lockstep* instead (``--method
lockstep``, the default for them): one connection, a fixed number of round
trips, and before each request the client waits until the server is asleep in
its poll -- every one of its threads blocked, one of them in ``epoll_wait``
(``/proc/PID/task/*/stat`` and ``wchan``).  Each round trip then takes the
same path at any speed, under callgrind as at full speed on an idle server:
wake up, read the request, answer it, find the socket empty, wait again.  It
is a different path from the saturated one (every round trip pays for a whole
poll, nothing is batched), so lockstep counts compare loops with each other,
not with saturated counts; ``--method lockstep`` counts the Protocol rows that
way too, for one table of all three modes.

With ``--syscalls`` the same drivers count the server's *system calls* per
round trip instead, by name, with the server running at full speed (``perf
stat``, see :mod:`~slipstream.bench.perf_syscalls`): the kernel's side that
callgrind cannot see.  In lockstep those counts are exact; saturated, the
number of waits depends on how often the server catches up with its load.

The micro-benchmarks need no such care: they do no I/O, so their path does not
depend on speed.  Each runs twice in a child under callgrind, at two
operation counts, and the difference of the two totals over the difference
of the operations is the cost of one operation: start-up, imports and the
creation of the loop cancel out.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from . import micro
from .jobs import ECHO_MODES, ECHO_SIZES, WEB_SERVERS, load_spec, run_load_generator
from .loops import C_REFERENCE, REFERENCES, available_loops
from .perf_syscalls import SyscallMeter
from .perf_syscalls import available as syscalls_available
from .processes import BenchError, Server, c_compiler_available, cores, run_child

DEFAULT_ROWS = ("protocol.1k", "protocol.10k", "streams.1k", "sock.1k")
METHODS = ("auto", "saturated", "lockstep")
_TOTALS = re.compile(r"^totals:\s+(\d+)", re.MULTILINE)


class Meter(Protocol):
    """What a driver tells the measurement as a run goes through its phases."""

    def warmed_up(self, pid: int) -> None:
        """The warm-up is over; a settling window follows, then :meth:`start`."""

    def start(self, pid: int) -> None:
        """The measured part begins."""

    def stop(self, pid: int) -> None:
        """The measured part has ended."""


# Drives a server through a run: warms it up, tells the meter, settles, starts
# the meter, measures, stops it; returns the round trips of the measured part.
Driver = Callable[[Server, Meter], int]


def callgrind(arguments: list[str]) -> None:
    subprocess.run(["callgrind_control", *arguments], capture_output=True, check=False)


class CallgrindMeter:
    """A server under callgrind, its instrumentation off until the warm-up is over."""

    def warmed_up(self, pid: int) -> None:
        callgrind(["-i", "on", str(pid)])

    def start(self, pid: int) -> None:
        callgrind(["-z", str(pid)])  # zero the counters: the settling window is not counted

    def stop(self, pid: int) -> None:
        callgrind(["-d", str(pid)])  # dump the counts of the measured part


def count(loop: str, mode: str, drive: Driver, kind: str = "echo") -> tuple[int, int]:
    """(round trips, user-space instructions) of ``loop``'s ``kind`` server, measured by ``drive``.

    ``kind`` is ``echo`` (``mode`` protocol, streams or sock) or a web server
    of ``bench`` (uvicorn, aiohttp; ``mode`` unused).
    """
    from .processes import start_server  # imports slipstream: only when measuring

    with tempfile.TemporaryDirectory(prefix="slipstream-callgrind-") as directory:
        output = Path(directory, "callgrind.out")
        wrapper = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={output}",
        ]
        server = start_server(loop, kind, mode, wrapper=wrapper)
        try:
            requests = drive(server, CallgrindMeter())
            server.check_alive()
        finally:
            server.stop()
        dumps = sorted(Path(directory).glob("callgrind.out*"))
        totals = [int(m.group(1)) for f in dumps if (m := _TOTALS.search(f.read_text()))]
        if not totals:
            raise BenchError("callgrind wrote no counts")
        return requests, totals[-1]


def count_syscalls(
    loop: str, mode: str, drive: Driver, kind: str = "echo"
) -> tuple[int, dict[str, int]]:
    """(round trips, {system call: count}) of ``loop``'s server, measured by ``drive``.

    The server runs at full speed, counted by ``perf stat`` (see
    :mod:`~slipstream.bench.perf_syscalls`).
    """
    from .processes import start_server  # imports slipstream: only when measuring

    meter = SyscallMeter()
    server = start_server(loop, kind, mode)
    try:
        requests = drive(server, meter)
        server.check_alive()
    finally:
        meter.close()
        server.stop()
    return requests, meter.counts


def _measure(loop: str, mode: str, drive: Driver, kind: str, syscalls: bool) -> str:
    """One loop's line of a table: its count per round trip (or request), or the error."""
    unit = "round trips" if kind == "echo" else "requests"
    try:
        if not syscalls:
            requests, instructions = count(loop, mode, drive, kind)
            return f"{instructions / max(1, requests):>10,.0f}   ({requests:,} {unit})"
        requests, calls = count_syscalls(loop, mode, drive, kind)
    except BenchError as exc:
        return f"error: {exc}"
    per = max(1, requests)
    detail = ", ".join(
        f"{name} {number / per:.2f}"
        for name, number in sorted(calls.items(), key=lambda item: (-item[1], item[0]))
        if number / per >= 0.005
    )
    return f"{sum(calls.values()) / per:>10.2f}   ({requests:,} {unit})  {detail}"


def saturated(size: int, seconds: float, connections: int, load: str = "echo") -> Driver:
    """The load generator, ``connections`` requests in flight, for ``seconds``.

    ``load`` is the generator's mode: ``echo`` (messages of ``size`` bytes) or
    ``http`` (keep-alive GET requests, the web rows').
    """

    def drive(server: Server, meter: Meter) -> int:
        spec = load_spec(server, connections, size, warmup=0.0, duration=1.0, mode=load)
        run_load_generator(spec, timeout=60)  # warm-up, not measured
        meter.warmed_up(server.pid)
        run_load_generator(dict(spec, duration=0.5), timeout=60)  # settle
        meter.start(server.pid)
        result = run_load_generator(dict(spec, duration=seconds), timeout=seconds + 60)
        meter.stop(server.pid)
        if "error" in result:
            raise BenchError(str(result["error"]))
        return int(result["requests"])

    return drive


def lockstep(size: int, trips: int) -> Driver:
    """``trips`` round trips on one connection, each sent once the server is asleep."""

    def drive(server: Server, meter: Meter) -> int:
        with socket.create_connection(("127.0.0.1", server.port), timeout=60) as conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            round_trips(conn, server.pid, size, max(10, trips // 4))  # warm-up, not measured
            meter.warmed_up(server.pid)
            round_trips(conn, server.pid, size, max(10, trips // 10))  # settle
            meter.start(server.pid)
            round_trips(conn, server.pid, size, trips)
            meter.stop(server.pid)
        return trips

    return drive


def round_trips(conn: socket.socket, pid: int, size: int, trips: int) -> None:
    """Echo ``trips`` messages of ``size`` bytes, one at a time, each to a sleeping server."""
    message = b"x" * size
    buffer = memoryview(bytearray(65536))
    for _ in range(trips):
        wait_until_asleep(pid)
        conn.sendall(message)
        left = size
        while left > 0:
            received = conn.recv_into(buffer)
            if not received:
                raise BenchError("the server closed the connection")
            left -= received


def wait_until_asleep(pid: int, timeout: float = 30.0) -> None:
    """Return once every thread of ``pid`` is blocked and one is in ``epoll_wait`` (or a poll).

    A thread's ``wchan`` names the kernel function it sleeps in
    (``do_epoll_wait``; valgrind's other threads wait in a futex).  A kernel
    that hides it shows ``0``: then every thread blocked has to do.
    """
    deadline = time.monotonic() + timeout
    tasks = f"/proc/{pid}/task"
    while time.monotonic() < deadline:
        waits = []
        for tid in os.listdir(tasks):
            try:
                with open(f"{tasks}/{tid}/stat") as stat:
                    state = stat.read().rsplit(")", 1)[1].split()[0]
                with open(f"{tasks}/{tid}/wchan") as wchan:
                    waits.append(wchan.read() if state == "S" else "")
            except FileNotFoundError:  # a thread that has just ended
                continue
        hidden = all(wait == "0" for wait in waits)
        if all(waits) and (hidden or any("poll" in wait for wait in waits)):
            return
        time.sleep(0.00005)
    raise BenchError(f"the server did not go back to its poll within {timeout:.0f} s")


# The fraction of bench's operation counts for the smaller of the two runs of a
# micro-benchmark (the other does three times as many): large enough that one
# operation's cost dominates, small enough that the slowest (create_task+gather
# on asyncio, ~50x slower under callgrind) takes seconds, not minutes.
DEFAULT_MICRO_SCALE = 0.1


def count_micro(loop: str, bench: micro.MicroBenchmark, scale: float) -> float:
    """User-space instructions per operation of ``bench`` on ``loop``."""
    scales = (scale, 3 * scale)
    totals = []
    for run_scale in scales:
        with tempfile.TemporaryDirectory(prefix="slipstream-callgrind-") as directory:
            output = Path(directory, "callgrind.out")
            spec = {"task": "micro", "loop": loop, "names": [bench.name], "scale": run_scale}
            wrapper = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={output}"]
            run_child("slipstream.bench.child", spec, cores()[0], timeout=900, wrapper=wrapper)
            match = _TOTALS.search(output.read_text()) if output.exists() else None
            if match is None:
                raise BenchError("callgrind wrote no counts")
            totals.append(int(match.group(1)))
    low, high = (micro.operations_in_run(bench, run_scale) for run_scale in scales)
    return (totals[1] - totals[0]) / (high - low)


def _print_micro(names: list[str], loops: list[str], width: int, scale: float) -> None:
    for name in names:
        bench = micro.BY_NAME[name]
        print(f"micro {bench.label}: instructions per operation (user space)")
        for loop in loops:
            if loop in REFERENCES:
                continue
            try:
                per_operation = count_micro(loop, bench, scale)
            except BenchError as exc:
                print(f"  {loop:<{width}}  error: {exc}", flush=True)
                continue
            print(f"  {loop:<{width}}  {per_operation:>10,.0f}", flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m slipstream.bench.instructions",
        description="User-space instructions per echo round trip, counted by callgrind"
        " (or, with --syscalls, system calls, counted by perf).",
    )
    parser.add_argument("--loops", help="comma-separated loops (default: installed + references)")
    parser.add_argument(
        "--only",
        default=",".join(DEFAULT_ROWS),
        help=(
            "MODE.SIZE echo rows, web.uvicorn and web.aiohttp (saturated, "
            "--web-connections), 'micro' or micro.NAME, comma-separated "
            f"(default {','.join(DEFAULT_ROWS)})"
        ),
    )
    parser.add_argument(
        "--method",
        choices=METHODS,
        default="auto",
        help="saturated (10 connections), lockstep (one, each request to a sleeping server), or"
        " auto: saturated for Protocol rows, lockstep for streams and sock (see the docstring)",
    )
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="measured window, saturated (3 s)"
    )
    parser.add_argument("--connections", type=int, default=10, help="saturated: connections (10)")
    parser.add_argument(
        "--web-connections", type=int, default=50, help="web rows: connections (50, as bench's)"
    )
    parser.add_argument(
        "--trips", type=int, default=1000, help="lockstep: measured round trips (1000)"
    )
    parser.add_argument(
        "--micro-scale",
        type=float,
        default=DEFAULT_MICRO_SCALE,
        help=f"fraction of bench's micro counts for the smaller run ({DEFAULT_MICRO_SCALE})",
    )
    parser.add_argument(
        "--syscalls",
        action="store_true",
        help="count the server's system calls per round trip instead, each by name (perf stat;"
        " the server runs at full speed; echo and web rows)",
    )
    args = parser.parse_args(argv)
    if args.syscalls:
        missing = syscalls_available()
        if missing is not None:
            print(f"error: {missing}", file=sys.stderr)
            return 2
    elif shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("error: no valgrind (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    loops = args.loops.split(",") if args.loops else [*available_loops(), *REFERENCES]
    rows = []
    web_rows = []
    micro_names = []
    for name in args.only.split(","):
        mode, _, size_name = name.partition(".")
        if mode == "micro" and (not size_name or size_name in micro.BY_NAME):
            micro_names += [size_name] if size_name else [b.name for b in micro.BENCHMARKS]
        elif mode in ECHO_MODES and size_name in ECHO_SIZES:
            rows.append((mode, size_name))
        elif mode == "web" and (not size_name or size_name in WEB_SERVERS):
            web_rows += [size_name] if size_name else list(WEB_SERVERS)
        else:
            print(
                f"error: unknown row {name!r} (MODE.SIZE as protocol.1k, web.uvicorn, "
                f"web.aiohttp, micro or micro.NAME with NAME one of {', '.join(micro.BY_NAME)})",
                file=sys.stderr,
            )
            return 2
    if args.syscalls and micro_names:
        print("error: --syscalls counts echo and web rows, not micro", file=sys.stderr)
        return 2
    if not c_compiler_available():
        loops = [loop for loop in loops if loop != C_REFERENCE]
    width = max(len(loop) for loop in loops)
    what = "system calls" if args.syscalls else "instructions"
    space = "" if args.syscalls else " (user space)"
    _print_micro(micro_names, loops, width, args.micro_scale)
    for mode, size_name in rows:
        method = args.method
        if method == "auto":
            method = "saturated" if mode == "protocol" else "lockstep"
        size = ECHO_SIZES[size_name]
        drive = (
            saturated(size, args.seconds, args.connections)
            if method == "saturated"
            else lockstep(size, args.trips)
        )
        print(f"echo {ECHO_MODES[mode]} {size_name}, {method}: {what} per round trip{space}")
        for loop in loops:
            if loop in REFERENCES and mode != "protocol":
                continue
            line = _measure(loop, mode, drive, "echo", args.syscalls)
            print(f"  {loop:<{width}}  {line}", flush=True)
    for server in web_rows:
        drive = saturated(0, args.seconds, args.web_connections, load="http")
        print(
            f"web {WEB_SERVERS[server]}, {args.web_connections} conns, saturated: "
            f"{what} per request{space}"
        )
        for loop in loops:
            if loop in REFERENCES:
                continue
            line = _measure(loop, "", drive, server, args.syscalls)
            print(f"  {loop:<{width}}  {line}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
