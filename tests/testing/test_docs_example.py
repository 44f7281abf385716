"""The worked examples of docs/testing.md and the README run as written, in inner pytest runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def python_blocks_by_file_name() -> dict[str, str]:
    """The doc's ```python blocks whose first line names a file (``# name.py``)."""
    blocks = re.findall(r"```python\n# (\w+)\.py\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    return dict(blocks)


def test_the_worked_example_passes(pytester: pytest.Pytester) -> None:
    files = python_blocks_by_file_name()
    assert sorted(files) == ["heartbeat", "test_heartbeat"]
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\ntimeout = 30\n")
    pytester.makepyfile(**files)
    pytester.syspathinsert()
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=3)
    assert result.duration < 5.0  # an hour and a half of virtual time


def test_the_readme_example_passes(pytester: pytest.Pytester) -> None:
    readme = (DOC.parents[1] / "README.md").read_text()
    (example,) = [
        block for block in re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
        if "virtual_time" in block
    ]
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\ntimeout = 30\n")
    pytester.makepyfile(test_readme=example)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
