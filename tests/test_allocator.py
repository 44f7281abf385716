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


def _run(source: str, extra_environment: dict[str, str] | None = None) -> list[str]:
    """Run ``source`` in a new interpreter free of malloc tunables; its output's words."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MALLOC_") and key != "GLIBC_TUNABLES"
    }
    environment.update(extra_environment or {})
    return subprocess.run(
        [sys.executable, "-c", source],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


def _probe(extra_environment: dict[str, str]) -> str:
    return " ".join(_run(_PROBE, extra_environment))


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
    faults, answer = _run(_FAULT_PROBE)
    assert answer == "None"  # nothing taught glibc: the case this test is about
    assert int(faults) < 100  # 400 reads; a fresh mmap()ed block each would be 1,600


# A taught process's transports ask for 256 KiB reads; the compiled receive
# must serve them from its cached buffer and copy a short read out, not make
# and shrink a 256 KiB block per read (what happened when the cache's size was
# set through one compiled module and the stream engine, which has its own
# copy of the cache, never heard of it: ~860 instructions a 1 KiB echo).
# tracemalloc sees every block Python allocates; a 1 KiB echo through
# transports on both ends must never have held a block anywhere near 256 KiB.
_ECHO_PROBE = """
import asyncio, tracemalloc
import slipstream
from slipstream.transports import allocator

class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
    def data_received(self, data):
        self.transport.write(data)

async def main() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    message = bytes(range(256)) * 4
    async def trip() -> None:
        writer.write(message)
        assert await reader.readexactly(len(message)) == message
    for _ in range(50):
        await trip()
    tracemalloc.start()
    for _ in range(300):
        await trip()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(peak)
    writer.close()
    server.close()

slipstream.run(main())
print(allocator._answer)
"""


@pytest.mark.skipif(not _on_glibc(), reason="glibc's heap decides the transports' read size")
def test_compiled_transport_reads_do_not_allocate_what_they_ask_for() -> None:
    from slipstream import backends

    if not backends.COMPILED:
        pytest.skip("interpreted, recv(n) allocates n bytes per read, as socket.recv does")
    peak, answer = _run(_ECHO_PROBE)
    assert answer == "True"  # taught: the transports asked for 256 KiB reads
    assert int(peak) < 64 * 1024  # a 256 KiB block per read would show here
