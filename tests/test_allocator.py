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


# A process that never made a transport has not taught glibc (the bench's
# children are taught on purpose; a program of sock_* calls is not): the
# compiled receive's cached buffer must then be a heap block too, or every
# read longer than what is copied out hands over a fresh mmap()ed block and
# page-faults on each 4 KiB the kernel copies in (4 faults a 10 KiB read
# with a 256 KiB cache).  Counted in a new interpreter, on both builds.
_FAULT_PROBE = """
import asyncio, os, socket, sys
import slipstream

def minor_faults() -> int:
    with open("/proc/self/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[7])

async def main() -> None:
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    a.setblocking(False)
    payload = os.urandom(10 * 1024)
    async def one() -> None:
        b.sendall(payload)
        got = b""
        while len(got) < len(payload):
            got += await loop.sock_recv(a, 65536)
        assert got == payload
    for _ in range(50):
        await one()
    before = minor_faults()
    for _ in range(400):
        await one()
    print(minor_faults() - before)
    a.close()
    b.close()

slipstream.run(main())
from slipstream.transports import allocator
print(allocator._answer)
"""


@pytest.mark.skipif(
    not _on_glibc() or not os.path.exists("/proc/self/stat"),
    reason="glibc's heap, Linux's counters",
)
def test_sock_recv_in_an_untaught_process_does_not_fault_in_each_read() -> None:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MALLOC_") and key != "GLIBC_TUNABLES"
    }
    faults, answer = subprocess.run(
        [sys.executable, "-c", _FAULT_PROBE],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert answer == "None"  # nothing taught glibc: the case this test is about
    assert int(faults) < 100  # 400 reads; a fresh mmap()ed block each would be 1,600
