"""The benchmark harness works: a smoke run of seconds, never a timing assertion.

``python -m slipstream bench --quick`` runs the real machinery (a child
interpreter per loop, the JSON document, the table) with tiny operation counts.
These tests check that it runs and reports every expected row; they make no
claim about speed, which only a full, interleaved run on a quiet machine can.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from slipstream import backends
from slipstream.bench import micro, perf_syscalls
from slipstream.bench.instructions import wait_until_asleep
from slipstream.bench.jobs import ECHO_MODES, load_spec, select_jobs
from slipstream.bench.loadgen import complete_response, http_request
from slipstream.bench.processes import BenchError, run_child, start_server
from slipstream.bench.report import reference_notes, speedup, table

ROOT = Path(__file__).resolve().parent.parent


def run_bench(tmp_path: Path, *args: str) -> dict[str, Any]:
    results = tmp_path / "bench.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    done = subprocess.run(
        [sys.executable, "-m", "slipstream", "bench", "--quick", *args, "--json", str(results),
         "--chart", str(tmp_path / "bench.png")],
        capture_output=True, text=True, env=env, timeout=90, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(results.read_text())
    return document


def test_quick_micro_run_reports_every_row(tmp_path: Path) -> None:
    document = run_bench(tmp_path, "--loops", "asyncio,slipstream", "--only", "micro")
    assert document["loops"] == ["asyncio", "slipstream"]
    rows = {row["key"]: row for row in document["rows"]}
    assert sorted(rows) == sorted(f"micro.{bench.name}" for bench in micro.BENCHMARKS)
    for row in rows.values():
        assert row["unit"] == "ns/op"
        for loop in ("asyncio", "slipstream"):
            entry = row["loops"][loop]
            assert entry["errors"] == [], entry
            assert entry["median"] > 0
        assert set(row["speedup_vs_asyncio"]) == {"asyncio", "slipstream"}
    assert document["machine"]["python"]


def test_quick_echo_run_on_asyncio(tmp_path: Path) -> None:
    document = run_bench(tmp_path, "--loops", "asyncio", "--only", "echo.protocol.1k")
    rows = {row["key"]: row for row in document["rows"]}
    assert set(rows) == {"echo.protocol.1k.rps", "echo.protocol.1k.cpu"}
    entry = rows["echo.protocol.1k.rps"]["loops"]["asyncio"]
    assert entry["errors"] == [], entry
    assert entry["median"] > 0
    assert 0 < entry["loadgen_cpu_median"] <= 1.5  # a fraction of one core, not a percentage
    # The Python floor beside the loops (the C one needs a compiler, which CI has).
    floor = rows["echo.protocol.1k.cpu"]["loops"]["py-epoll"]
    assert floor["errors"] == [], floor
    assert floor["median"] > 0


def test_quick_web_run_serves_both_frameworks(tmp_path: Path) -> None:
    document = run_bench(tmp_path, "--loops", "asyncio,slipstream", "--only", "web")
    rows = {row["key"]: row for row in document["rows"]}
    assert set(rows) == {
        f"web.{name}.{metric}" for name in ("uvicorn", "aiohttp") for metric in ("rps", "cpu")
    }
    for row in rows.values():
        for loop in ("asyncio", "slipstream"):
            entry = row["loops"][loop]
            assert entry["errors"] == [], entry
            assert entry["median"] > 0


def test_http_responses_are_counted_whole() -> None:
    assert http_request(8080) == b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
    response = b"HTTP/1.1 200 OK\r\nserver: x\r\nContent-Length: 13\r\n\r\nHello, World!"
    assert complete_response(response) == len(response)
    assert complete_response(response[:-1]) == 0  # the body is not all there
    assert complete_response(response[:20]) == 0  # nor the head
    lower = response.replace(b"Content-Length", b"content-length")
    assert complete_response(bytearray(lower + b"HTTP/1.1")) == len(response)
    with pytest.raises(RuntimeError, match=r"not an HTTP/1\.1 200"):
        complete_response(response.replace(b"200 OK", b"404 Not Found"))
    with pytest.raises(RuntimeError, match="without Content-Length"):
        complete_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")


def test_python_load_generator_drives_a_web_server() -> None:
    # The fallback without a C compiler: loadgen.py's HTTP mode against aiohttp on asyncio.
    server = start_server("asyncio", "aiohttp")
    try:
        spec = load_spec(server, connections=4, size=0, warmup=0.1, duration=0.3, mode="http")
        result = json.loads(run_child("slipstream.bench.loadgen", spec, None, timeout=30))
        server.check_alive()
    finally:
        server.stop()
    assert "error" not in result, result
    assert result["requests"] > 0
    assert result["server_cpu"] > 0


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler")
def test_c_reference_server_ignores_sigpipe_and_echoes() -> None:
    # A load generator that closes connections while the echo is being written
    # must not kill the C server: SIGPIPE's default action is to end the process.
    server = start_server("c-epoll", "protocol")
    try:
        status = Path(f"/proc/{server.process.pid}/status").read_text().splitlines()
        ignored = int(next(line for line in status if line.startswith("SigIgn:")).split()[1], 16)
        assert ignored & (1 << (signal.SIGPIPE - 1))
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
            payload = os.urandom(100 * 1024)
            connection.sendall(payload)
            echoed = b""
            while len(echoed) < len(payload):
                echoed += connection.recv(65536)
        assert echoed == payload
        server.check_alive()
    finally:
        server.stop()


def test_selectors_pick_jobs_by_dotted_parts() -> None:
    assert [job.key for job in select_jobs(["echo.1k"])] == [
        "echo.protocol.1k",
        "echo.streams.1k",
        "echo.sock.1k",
    ]
    assert [job.key for job in select_jobs(["micro", "http"])] == ["micro", "http"]
    assert [job.key for job in select_jobs(["web"])] == ["web.uvicorn", "web.aiohttp"]
    with pytest.raises(ValueError, match="unknown benchmark nonsense"):
        select_jobs(["nonsense"])


def test_speedup_is_above_one_for_the_better_value() -> None:
    assert speedup(200.0, 100.0, higher_is_better=True) == 2.0
    assert speedup(50.0, 100.0, higher_is_better=False) == 2.0


def test_table_shows_errors_as_footnotes() -> None:
    document: dict[str, Any] = {
        "loops": ["asyncio", "slipstream"],
        "rows": [
            {
                "key": "echo.sock.1k.rps",
                "label": "echo sock 1 KiB",
                "unit": "req/s",
                "loops": {
                    "asyncio": {"samples": [1.0], "errors": [], "median": 1.0, "min": 1.0,
                                "max": 1.0},
                    "slipstream": {"samples": [], "errors": ["NotImplementedError: sock_recv"]},
                },
                "speedup_vs_asyncio": {"asyncio": 1.0},
            }
        ],
    }  # fmt: skip
    text = table(document)
    assert "error (1)" in text
    assert "(1) slipstream: NotImplementedError: sock_recv" in text


def test_reference_notes_put_slipstream_over_each_floor() -> None:
    def cell(median: float) -> dict[str, Any]:
        return {"samples": [median], "errors": [], "median": median, "min": median, "max": median}

    document: dict[str, Any] = {
        "rows": [
            {
                "label": "echo Protocol 1 KiB server CPU",
                "unit": "µs/req",
                "loops": {"slipstream": cell(7.5), "c-epoll": cell(5.0), "py-epoll": cell(7.5)},
            },
            {  # req/s rows and rows without slipstream say nothing
                "label": "echo Protocol 1 KiB",
                "unit": "req/s",
                "loops": {"slipstream": cell(1.0), "c-epoll": cell(2.0)},
            },
        ]
    }
    assert reference_notes(document) == [
        "echo Protocol 1 KiB server CPU: slipstream 7.5 µs = 1.50x c-epoll, 1.00x py-epoll"
    ]


def run_instructions(*args: str) -> list[str]:
    """The lines ``python -m slipstream.bench.instructions ARGS`` prints (it must succeed)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    done = subprocess.run(
        [sys.executable, "-m", "slipstream.bench.instructions", *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def count_instructions(*args: str) -> tuple[str, list[str]]:
    """``slipstream.bench.instructions ARGS``: its title, the last row's loop and count."""
    lines = run_instructions(*args)
    return lines[0], lines[-1].split()[:2]


@pytest.mark.skipif(
    shutil.which("valgrind") is None or shutil.which("callgrind_control") is None,
    reason="valgrind is not installed",
)
@pytest.mark.parametrize(
    ("loop", "options", "title"),
    [
        # saturated: the reference server, 10 connections for a window
        ("py-epoll", ("--only", "protocol.1k", "--seconds", "0.3"), "echo Protocol 1k, saturated"),
        # lockstep: one connection, a fixed number of round trips
        ("asyncio", ("--only", "sock.1k", "--trips", "20"), "echo sock_recv/sendall 1k, lockstep"),
        # a web row: uvicorn's hello app under the HTTP load, saturated
        (
            "slipstream",
            ("--only", "web.uvicorn", "--seconds", "0.3", "--web-connections", "5"),
            "web uvicorn+httptools ASGI hello, 5 conns, saturated",
        ),
    ],
)
def test_instruction_count_runs_under_callgrind(
    loop: str, options: tuple[str, ...], title: str
) -> None:
    printed_title, (printed_loop, count) = count_instructions("--loops", loop, *options)
    assert printed_title.startswith(title)
    assert printed_loop == loop
    assert int(count.replace(",", "")) > 0


def test_perf_counts_are_parsed_by_system_call() -> None:
    text = (
        "# started on Mon Dec  7 15:00:00 2026\n\n"
        "3010,,raw_syscalls:sys_enter,2000,100.00,,\n"
        "1003,,syscalls:sys_enter_epoll_wait,2000,100.00,,\n"
        "0,,syscalls:sys_enter_read,2000,100.00,,\n"
        "2000,,syscalls:sys_enter_recvfrom,2000,100.00,,\n"
        "<not counted>,,syscalls:sys_enter_write,0,0.00,,\n"
        "7,,cycles,2000,100.00,,\n"
    )
    # what the named tracepoints did not count is "other"
    assert perf_syscalls.parse(text) == {"epoll_wait": 1003, "recvfrom": 2000, "other": 7}
    assert perf_syscalls.parse(text.replace("3010,", "3003,")) == {
        "epoll_wait": 1003,
        "recvfrom": 2000,
    }


def count_syscalls(loop: str, mode: str) -> dict[str, float]:
    """``instructions --syscalls``, one lockstep echo row on ``loop``: calls per round trip.

    Skips the test where perf cannot count system calls.
    """
    if (missing := perf_syscalls.available()) is not None:
        pytest.skip(missing)
    title, row = run_instructions(
        "--syscalls", "--loops", loop, "--only", f"{mode}.1k", "--method", "lockstep",
        "--trips", "50",
    )  # fmt: skip
    assert title == f"echo {ECHO_MODES[mode]} 1k, lockstep: system calls per round trip"
    # "  asyncio   3.00   (50 round trips)  epoll_wait 1.00, recvfrom 1.00, sendto 1.00"
    name, total, _ = row.split(maxsplit=2)
    assert name == loop
    calls = {
        call: float(number)
        for call, number in (item.split() for item in row.split(")", 1)[1].split(","))
    }
    assert float(total) == pytest.approx(sum(calls.values()), abs=0.03)
    return calls


def test_syscall_count_of_a_lockstep_echo_on_asyncio() -> None:
    # asyncio's Protocol round trip on a server woken by each request: one
    # wait, one read, one write, nothing else.
    assert count_syscalls("asyncio", "protocol") == {
        "epoll_wait": 1.0,
        "recvfrom": 1.0,
        "sendto": 1.0,
    }


@pytest.mark.parametrize("mode", ["protocol", "streams", "sock"])
def test_a_sleeping_slipstream_server_mostly_waits_once_a_round_trip(mode: str) -> None:
    if not backends.COMPILED:
        pytest.skip("the compiled backend's waits (the pure one calls select.epoll's poll)")
    # Woken by each request, the loop sleeps at once instead of first peeking
    # without releasing the GIL, but for one peek in every few wake-ups (see
    # slipstream_epoll_wait_count): one read, one write, about one wait.
    calls = count_syscalls("slipstream", mode)
    assert calls["recvfrom"] == 1.0
    assert calls["sendto"] == 1.0
    assert 1.0 <= calls["epoll_wait"] <= 1.2
    assert set(calls) == {"epoll_wait", "recvfrom", "sendto"}


def test_lockstep_waits_for_a_sleeping_server() -> None:
    code = "import select, sys; e = select.epoll(); print(flush=True); e.poll(60)"
    polling = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    busy = subprocess.Popen([sys.executable, "-c", "print(flush=True)\nwhile True: pass"],
                            stdout=subprocess.PIPE)  # fmt: skip
    try:
        for process in (polling, busy):
            assert process.stdout is not None
            process.stdout.readline()  # started
        wait_until_asleep(polling.pid, timeout=10)  # returns: asleep in epoll_wait
        with pytest.raises(BenchError, match="did not go back to its poll"):
            wait_until_asleep(busy.pid, timeout=0.3)
    finally:
        for process in (polling, busy):
            process.kill()
            process.wait()


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_micro_instruction_count_runs_under_callgrind() -> None:
    title, (loop, count) = count_instructions(
        "--loops", "slipstream", "--only", "micro.call_soon_chain", "--micro-scale", "0.002"
    )
    assert title.startswith("micro call_soon chain")
    assert loop == "slipstream"
    assert float(count.replace(",", "")) > 0


def test_micro_operation_counts_include_the_warm_up() -> None:
    chain = micro.BY_NAME["call_soon_chain"]
    assert micro.passes(chain, 0.5) == (10_000, 100_000)
    assert micro.operations_in_run(chain, 0.5) == 110_000
    gather = micro.BY_NAME["create_task_gather"]
    # Tasks come in whole batches of 100: a 150-task pass makes 100.
    assert micro.performed(gather, 150) == 100
    assert micro.operations_in_run(gather, 0.01) == 100 + 500
