"""The examples run unchanged on stock asyncio and on slipstream, with the same output.

Each example is an ordinary asyncio program (`asyncio.run(main())`). It is run as a
subprocess twice: `python examples/X.py` uses asyncio's own loop, and
`python -m slipstream examples/X.py` runs the same file on slipstream. The asyncio run
must print the expected lines; the slipstream run must print exactly the same output.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

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
}
NAMES = sorted(EXPECTED_LINES)


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return f"exit code {self.returncode}\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}"


def run_example(name: str, *, on_slipstream: bool) -> Run:
    script = str(EXAMPLES / f"{name}.py")
    loop_args = ["-m", "slipstream"] if on_slipstream else []
    command = [sys.executable, *loop_args, script]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False
    )
    return Run(done.returncode, done.stdout, done.stderr)


@functools.cache
def run_on_asyncio(name: str) -> Run:
    return run_example(name, on_slipstream=False)


def test_every_example_is_tested() -> None:
    assert sorted(path.stem for path in EXAMPLES.glob("*.py")) == NAMES


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
