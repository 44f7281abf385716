"""What ``data_received`` is given stays what it was, whatever the reader reuses.

The compiled stream transport copies a short read into the bytes object of the
previous one when ``data_received`` kept no reference to it, and receives a
long read straight into the previous long read's object once long reads have
kept fitting it (see ``slipstream_recv_recycle`` and ``slipstream_recv_stream``
in ``backends/syscalls.pxd``).  These tests hold
the line a reuse must never cross, on every loop: a chunk the protocol keeps
is never changed by later reads, a chunk's hash is its own (bytes cache their
hash, and a reused object must not bring the old one along), the bytes
arrive complete and in order, and a kept chunk still works as a dict key.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

Run = Callable[[Coroutine[Any, Any, Any]], Any]

# Around every threshold of the reuse: the one-byte singletons, pymalloc's
# 512-byte limit, glibc's tcache limit, the copy-out limit of 4 KiB, a reused
# object's "at most twice the read" rule (a 4 KiB object then a 2 KiB read).
SIZES = [1, 2, 3, 100, 479, 480, 512, 513, 1000, 1024, 1032, 1033, 2047, 2048, 2049]
SIZES += [3000, 4095, 4096, 4097, 8192, 65536]


class Recorder(asyncio.Protocol):
    """Keeps every third chunk itself, a copy and the hash of every chunk; acks each message."""

    def __init__(self, expected: list[int]) -> None:
        self.ends = [sum(expected[: i + 1]) for i in range(len(expected))]
        self.received = 0
        self.acked = 0
        self.kept: list[tuple[bytes, bytes]] = []
        self.copies: list[bytes] = []
        self.hashes: list[tuple[int, int]] = []
        self.digests: list[bytes] = []
        self.keys: dict[bytes, int] = {}
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        # bytes(data) and data[:] would be data itself: copy through a bytearray.
        copy = bytes(bytearray(data))
        self.copies.append(copy)
        self.hashes.append((hash(data), hash(copy)))
        self.digests.append(hashlib.sha256(data).digest())
        if len(self.copies) % 3 == 0:
            self.kept.append((data, copy))
            self.keys[data] = len(self.copies)
        self.received += len(data)
        while self.acked < len(self.ends) and self.received >= self.ends[self.acked]:
            self.acked += 1
            self.transport.write(b"k")
        if self.acked == len(self.ends):
            self.done.set_result(None)


async def send_in_lockstep(sizes: list[int], seed: int) -> tuple[Recorder, list[bytes]]:
    loop = asyncio.get_running_loop()
    recorders: list[Recorder] = []

    def factory() -> Recorder:
        recorders.append(Recorder(sizes))
        return recorders[-1]

    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    rng = random.Random(seed)
    messages = [rng.randbytes(size) for size in sizes]
    for message in messages:
        # One message in flight at a time: each arrives as a read of its own
        # size (or a few, if the kernel splits it), so the sizes vary read to read.
        writer.write(message)
        assert await asyncio.wait_for(reader.readexactly(1), 10) == b"k"
    await asyncio.wait_for(recorders[0].done, 10)
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    return recorders[0], messages


def check(recorder: Recorder, messages: list[bytes]) -> None:
    assert b"".join(recorder.copies) == b"".join(messages)
    for data, copy in recorder.kept:
        assert data == copy  # not overwritten by a later read
        assert len(data) == len(copy)
        assert recorder.keys[bytes(bytearray(data))] > 0  # still a working dict key
    for seen, fresh in recorder.hashes:
        assert seen == fresh  # never a previous chunk's cached hash
    assert recorder.digests == [hashlib.sha256(copy).digest() for copy in recorder.copies]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_chunks_of_every_size_stay_intact(run: Run, seed: int) -> None:
    rng = random.Random(seed)
    sizes = SIZES + [rng.choice(SIZES) for _ in range(300)]
    rng.shuffle(sizes)
    recorder, messages = run(send_in_lockstep(sizes, seed))
    check(recorder, messages)


def test_shrinking_and_growing_reads_stay_intact(run: Run) -> None:
    # Down from 4 KiB a byte-range at a time (each read fits the last object's
    # room, the later ones by less than half), then back up.
    sizes = list(range(4096, 1, -97)) + list(range(2, 4097, 89))
    recorder, messages = run(send_in_lockstep(sizes, 7))
    check(recorder, messages)


# Long reads: the sizes around the long spare's rules.  Eight or more reads of
# one size in a row start the reads into the spare; a message an eighth larger
# than the last fills the spare and is read in two; one at most half the
# spare's room shrinks it; 256 KiB is the largest read a transport asks for.
ONE_SIZE = 16


def test_long_reads_of_one_size_then_another_stay_intact(run: Run) -> None:
    sizes: list[int] = []
    for size in (10_240, 100_000, 4_097, 262_144, 20_000):
        sizes += [size] * ONE_SIZE
    recorder, messages = run(send_in_lockstep(sizes, 11))
    check(recorder, messages)


def test_long_reads_that_outgrow_the_spare_stay_intact(run: Run) -> None:
    # Each run of one size lets the reads go into the spare; the next size is
    # larger than its room (filled, the rest read on the next turn), or at
    # most half of it (the spare shrunk), or just below or at it.
    sizes: list[int] = []
    for size in (10_000, 11_250, 11_251, 12_000, 30_000, 14_000, 9_000, 4_500, 200_000):
        sizes += [size] * (ONE_SIZE // 2 + 1)
    recorder, messages = run(send_in_lockstep(sizes, 12))
    check(recorder, messages)


@pytest.mark.parametrize("seed", [4, 5])
def test_long_reads_of_scattered_sizes_stay_intact(run: Run, seed: int) -> None:
    rng = random.Random(seed)
    sizes = [rng.randrange(4_000, 300_000) for _ in range(120)]
    sizes += [rng.choice([10_240, 65_536]) for _ in range(120)]
    recorder, messages = run(send_in_lockstep(sizes, seed))
    check(recorder, messages)


class Collector(asyncio.Protocol):
    """Keeps every other chunk itself and copies all; resolves at the end of the stream."""

    def __init__(self) -> None:
        self.copies: list[bytes] = []
        self.kept: list[tuple[bytes, bytes]] = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        copy = bytes(bytearray(data))
        self.copies.append(copy)
        if len(self.copies) % 2:
            self.kept.append((data, copy))

    def eof_received(self) -> bool:
        self.done.set_result(None)
        return False


async def stream_then_close(chunks: list[bytes], pause_every: int) -> Collector:
    loop = asyncio.get_running_loop()
    collectors: list[Collector] = []

    def factory() -> Collector:
        collectors.append(Collector())
        return collectors[-1]

    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    for index, chunk in enumerate(chunks):
        writer.write(chunk)
        await writer.drain()
        if index % pause_every == 0:
            await asyncio.sleep(0.001)  # let the server read what came so far on its own
    writer.write_eof()
    await asyncio.wait_for(collectors[0].done, 20)
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    return collectors[0]


@pytest.mark.parametrize("pause_every", [1, 7, 1_000_000], ids=["paced", "bursts", "bulk"])
def test_a_stream_that_grows_then_ends_arrives_whole(run: Run, pause_every: int) -> None:
    # Steady 10 KiB chunks (the spare in use), then larger ones and a bulk
    # tail, then the end of the stream right behind the last bytes: every byte
    # arrives once, in order, kept chunks untouched, and the end is seen.
    rng = random.Random(pause_every)
    chunks = [rng.randbytes(10_240) for _ in range(40)]
    chunks += [rng.randbytes(rng.randrange(10_000, 120_000)) for _ in range(40)]
    chunks += [rng.randbytes(1 << 20) for _ in range(6)]
    collector = run(stream_then_close(chunks, pause_every))
    assert hashlib.sha256(b"".join(collector.copies)).digest() == hashlib.sha256(
        b"".join(chunks)
    ).digest()
    for data, copy in collector.kept:
        assert data == copy

