"""The read-size decision of transports/allocator.py (glibc's dynamic mmap threshold)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from slipstream.transports import allocator

_PROBE = (
    "from slipstream.transports import allocator; "
    "print(allocator.large_reads_are_cheap(), allocator.large_reads_are_cheap())"
)


def _probe(extra_environment: dict[str, str]) -> str:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MALLOC_") and key != "GLIBC_TUNABLES"
    }
    environment.update(extra_environment)
    return subprocess.run(
        [sys.executable, "-c", _PROBE],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _on_glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError):
        return False


@pytest.mark.skipif(not _on_glibc(), reason="the dynamic threshold is glibc's")
def test_glibc_with_a_dynamic_threshold_allows_large_reads() -> None:
    assert _probe({}) == "True True"


@pytest.mark.parametrize(
    "environment",
    [
        {"MALLOC_MMAP_THRESHOLD_": "131072"},
        {"MALLOC_TRIM_THRESHOLD_": "1048576"},
        {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=131072"},
    ],
)
def test_a_fixed_threshold_keeps_reads_small(environment: dict[str, str]) -> None:
    # mallopt semantics: any of these turns the dynamic adjustment off, so
    # there is nothing to teach and a 256 KiB read could be mmap'ed each time.
    assert _probe(environment) == "False False"


def test_read_sizes_stay_on_the_right_side_of_the_initial_threshold() -> None:
    assert allocator.SMALL_READ < 128 * 1024 <= allocator.LARGE_READ


@pytest.mark.skipif(not _on_glibc(), reason="the dynamic threshold is glibc's")
def test_transports_read_256_kib_where_large_reads_are_cheap() -> None:
    import asyncio
    import socket

    from slipstream import new_event_loop

    async def main() -> int:
        left, right = socket.socketpair()
        transport, _ = await asyncio.get_running_loop().connect_accepted_socket(
            asyncio.Protocol, left
        )
        try:
            size: int = transport._engine.read_size  # type: ignore[attr-defined]
            return size
        finally:
            transport.close()
            right.close()

    loop = new_event_loop()
    try:
        assert loop.run_until_complete(main()) == allocator.LARGE_READ
    finally:
        loop.close()
