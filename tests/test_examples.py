"""The examples run unchanged on stock asyncio and on slipstream, with the same output.

Each example is an ordinary asyncio program (`asyncio.run(main())`). It is run as a
subprocess twice: `python examples/X.py` uses asyncio's own loop, and
`python -m slipstream examples/X.py` runs the same file on slipstream. The asyncio run
must print the expected lines; the slipstream run must print exactly the same output.

Three examples need more than a run to completion: ``db.py`` talks to the PostgreSQL
server that ``scripts/test.sh`` starts (and must say clearly when it has none),
``webserver.py`` serves until a signal stops it, and ``asgi_app.py`` is the application
of the README's server commands; each has its own tests below, on both loops too.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.libraries.conftest import service_url
from tests.servers.harness import (
    ServerProcess,
    free_port,
    get_json,
    gunicorn_command,
    hypercorn_command,
    loop_class_name,
    uvicorn_command,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
RUN_TIMEOUT = 60  # seconds for one example run

# Lines each example must print (on either loop); the rest of the output is compared whole.
EXPECTED_LINES: dict[str, list[str]] = {
    "hello": ["Hello", "World", "ran in sequence: True"],
    "tasks_gather": [
        "created 3 tasks",
        "fast: finished after 0.1 s",
        "gathered: ['slow result', 'fast result', 'medium result']",
        "ran concurrently: True",
    ],
    "lock_counter": ["with a lock: 1000 of 1000", "correct: True"],
    "semaphore_downloads": [
        "GET /page/8: 200, 1280 bytes",
        "GET /missing: 404, 10 bytes",
        "downloaded 8 pages",
        "max concurrent downloads: 3",
    ],
    "exceptions": [
        "caught ValueError: invalid literal for int() with base 10: 'forty-two'",
        "handler: Exception in callback failing_callback() -> RuntimeError('callback failed')",
        "handler: Task exception was never retrieved -> KeyError('missing')",
        "main finished normally",
    ],
    "to_thread": [
        "blocking work done",
        "ran in another thread: True",
        "the loop kept ticking meanwhile: True",
    ],
    "scrape": [
        "index: 12 links",
        "/articles/12: 'Article 12: 300 words' (300 words)",
        "scraped 12 pages, 1950 words in all",
        "max concurrent fetches: 4",
    ],
    "cpu_bound": [
        "primes below 240000: 21221",
        "ran in worker processes, not this one: True",
        "the loop kept ticking meanwhile: True",
    ],
}
NAMES = sorted(EXPECTED_LINES)
DB_LINES = [
    "squares from the server: [1, 4, 9, 16, 25, 36, 49, 64]",
    "max queries at once: 4 (pool of 4)",
    "moving 10 apples breaks the CHECK constraint: rolled back",
    "fruit: apple 2, banana 15, cherry 40",
]
LOOPS = ("asyncio", "slipstream")


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return f"exit code {self.returncode}\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}"


def example_command(name: str, *args: str, on_slipstream: bool) -> list[str]:
    """``python examples/NAME.py ARGS``, or the same under ``python -m slipstream``."""
    loop_args = ["-m", "slipstream"] if on_slipstream else []
    return [sys.executable, *loop_args, str(EXAMPLES / f"{name}.py"), *args]


def run_example(
    name: str, *args: str, on_slipstream: bool, env: dict[str, str] | None = None
) -> Run:
    done = subprocess.run(
        example_command(name, *args, on_slipstream=on_slipstream),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr)


@functools.cache
def run_on_asyncio(name: str) -> Run:
    return run_example(name, on_slipstream=False)


def test_every_example_is_tested() -> None:
    tested_apart = ["asgi_app", "db", "webserver"]  # by the tests at the end of this file
    assert sorted(path.stem for path in EXAMPLES.glob("*.py")) == sorted(NAMES + tested_apart)


@pytest.mark.parametrize("name", NAMES)
def test_example_on_asyncio(name: str) -> None:
    run = run_on_asyncio(name)
    assert run.returncode == 0, run.describe()
    assert run.stderr == "", run.describe()
    lines = run.stdout.splitlines()
    for expected in EXPECTED_LINES[name]:
        assert expected in lines, run.describe()


@pytest.mark.parametrize("name", NAMES)
def test_example_on_slipstream_matches_asyncio(name: str) -> None:
    reference = run_on_asyncio(name)
    run = run_example(name, on_slipstream=True)
    assert run.returncode == 0, run.describe()
    assert run.stdout == reference.stdout, run.describe()


def test_db_example_on_both_loops() -> None:
    dsn = service_url("SLIPSTREAM_TEST_PG_DSN", "PostgreSQL", "SLIPSTREAM_TEST_PG_ERROR")
    reference = run_example("db", dsn, on_slipstream=False)
    assert reference.returncode == 0, reference.describe()
    assert reference.stderr == "", reference.describe()
    for expected in DB_LINES:
        assert expected in reference.stdout.splitlines(), reference.describe()
    run = run_example("db", dsn, on_slipstream=True)
    assert run.returncode == 0, run.describe()
    assert run.stdout == reference.stdout, run.describe()


@pytest.mark.parametrize("loop", LOOPS)
def test_db_example_without_a_dsn_says_what_it_needs(loop: str) -> None:
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    run = run_example("db", on_slipstream=loop == "slipstream", env=env)
    assert run.returncode == 2, run.describe()
    assert run.stdout == "", run.describe()
    assert "db.py needs a PostgreSQL server" in run.stderr, run.describe()
    assert "DATABASE_URL" in run.stderr, run.describe()


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_webserver_example_serves_until_a_signal(
    loop: str, signum: signal.Signals, tmp_path: Path
) -> None:
    port = free_port()
    command = example_command("webserver", "--port", str(port), on_slipstream=loop == "slipstream")
    server = ServerProcess(command, tmp_path / "webserver.log")
    try:
        assert server.wait_until_serving(port)["loop"] == loop_class_name(loop)
        assert get_json(port, "/hello/reader") == {"greeting": "Hello, reader!"}
        # SIGINT to the whole group, as Ctrl+C in a terminal; SIGTERM to the process.
        status = server.stop(signum, to_group=signum == signal.SIGINT)
        output = server.output().splitlines()
    finally:
        server.close()
    assert status == 0, server.describe()
    assert output[0] == f"serving on http://127.0.0.1:{port}/ (Ctrl+C to stop)"
    assert output[-3:] == [
        "GET /hello/reader: 200",
        "stopping: requests in flight finish first",
        f"answered {output.count('GET /loop: 200') + 1} requests",
    ], output


# One worker each: a worker that is still booting when Ctrl+C comes misses it (gunicorn's
# handlers are still in place), so the test signals once the worker has answered.
# tests/servers reaches every one of several workers first.
ASGI_SERVERS = {
    "uvicorn": uvicorn_command,
    "gunicorn": gunicorn_command,
    "hypercorn": hypercorn_command,
}


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("server", sorted(ASGI_SERVERS))
def test_asgi_app_example_under_the_readme_servers(loop: str, server: str, tmp_path: Path) -> None:
    port = free_port()
    command = ASGI_SERVERS[server](loop, port, "examples.asgi_app:app")
    process = ServerProcess(command, tmp_path / "server.log")
    try:
        answer = process.wait_until_serving(port)
        assert answer["loop"] == loop_class_name(loop)
        assert answer["path"] == "/loop"
        assert process.stop(signal.SIGINT, to_group=True) == 0, process.describe()
    finally:
        process.close()
