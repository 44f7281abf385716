"""Backpressure: a fast writer, a slow reader, and the write buffer held to its limits.

The reader pauses for a moment after every quarter MiB, so the kernel's socket
buffers fill and the writer's transport has to buffer.  After every write the
transport may hold at most the high-water mark plus that one write; when
``resume_writing`` comes (Protocol writer) or a ``drain()`` that had to wait
returns (streams writer), it holds at most the low-water mark.  The reader
checks every byte with a running CRC, and the RSS is sampled throughout.
"""

from __future__ import annotations

import asyncio
import functools
import random
import zlib

from .common import Figures, Scale, rss_bytes

HIGH_WATER = 64 * 1024
LOW_WATER = 16 * 1024
LARGEST_WRITE = 256 * 1024
READER_PAUSE_EVERY = 256 * 1024  # bytes
READER_PAUSE = 0.002  # seconds
# The process may grow by at most this much while a writer runs: the transport
# buffers at most HIGH_WATER + LARGEST_WRITE, the rest is the reader's reads.
RSS_BOUND = 48 * 2**20


class SlowReader(asyncio.Protocol):
    """Counts and checksums what arrives, pausing reading now and then."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.received = 0
        self.crc = 0
        self.pauses = 0
        self.done: asyncio.Future[None] = loop.create_future()
        self._since_pause = 0
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.crc = zlib.crc32(data, self.crc)
        self._since_pause += len(data)
        if self._since_pause >= READER_PAUSE_EVERY and self._transport is not None:
            self._since_pause = 0
            self.pauses += 1
            self._transport.pause_reading()
            asyncio.get_running_loop().call_later(READER_PAUSE, self._transport.resume_reading)

    def eof_received(self) -> bool:
        self.done.set_result(None)
        return False


class BufferWatch:
    """What the writer saw of its transport's buffer."""

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self.transport = transport
        self.writes = 0
        self.sent = 0
        self.crc = 0
        self.waits = 0  # pauses (Protocol) or drains that had to wait (streams)
        self.largest_excess = 0  # most bytes buffered beyond the high-water mark
        self.rss_before = rss_bytes()
        self.rss_peak = self.rss_before

    def wrote(self, chunk: bytes) -> None:
        self.writes += 1
        self.sent += len(chunk)
        self.crc = zlib.crc32(chunk, self.crc)
        buffered = self.transport.get_write_buffer_size()
        if buffered > HIGH_WATER + len(chunk):
            raise AssertionError(
                f"{buffered} bytes buffered after a {len(chunk)}-byte write "
                f"(high water {HIGH_WATER})"
            )
        self.largest_excess = max(self.largest_excess, buffered - HIGH_WATER)
        if self.writes % 64 == 0:
            self.rss_peak = max(self.rss_peak, rss_bytes())

    def woke(self) -> None:
        self.waits += 1
        buffered = self.transport.get_write_buffer_size()
        if buffered > LOW_WATER:
            raise AssertionError(f"woken with {buffered} bytes buffered (low water {LOW_WATER})")


class PausingWriter(asyncio.Protocol):
    """A Protocol writer that stops at pause_writing and goes on at resume_writing."""

    def __init__(self) -> None:
        self.watch: BufferWatch | None = None
        self.resumed: asyncio.Future[None] | None = None

    def pause_writing(self) -> None:
        self.resumed = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        assert self.watch is not None and self.resumed is not None
        self.watch.woke()
        self.resumed.set_result(None)


def _make_reader(readers: list[SlowReader]) -> SlowReader:
    readers.append(SlowReader())
    return readers[-1]


def chunks(seed: int, total: int) -> list[tuple[int, int]]:
    """(offset, size) of each write into the random pool, ``total`` bytes in all."""
    rng = random.Random(seed)
    plan = []
    left = total
    while left:
        size = min(left, rng.randint(1, LARGEST_WRITE))
        plan.append((rng.randrange(LARGEST_WRITE), size))
        left -= size
    return plan


async def with_protocol(port: int, pool: bytes, plan: list[tuple[int, int]]) -> BufferWatch:
    loop = asyncio.get_running_loop()
    transport, writer = await loop.create_connection(PausingWriter, "127.0.0.1", port)
    transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
    watch = writer.watch = BufferWatch(transport)
    for offset, size in plan:
        chunk = pool[offset : offset + size]
        transport.write(chunk)
        watch.wrote(chunk)
        if writer.resumed is not None:
            await writer.resumed
            writer.resumed = None
    transport.write_eof()
    return watch


async def with_streams(port: int, pool: bytes, plan: list[tuple[int, int]]) -> BufferWatch:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
    watch = BufferWatch(writer.transport)
    for offset, size in plan:
        chunk = pool[offset : offset + size]
        writer.write(chunk)
        watch.wrote(chunk)
        must_wait = writer.transport.get_write_buffer_size() > HIGH_WATER
        await writer.drain()
        if must_wait:
            watch.woke()
    writer.write_eof()
    return watch


async def backpressure(scale: Scale, seed: int = 14) -> Figures:
    """Send ``scale.backpressure_bytes`` through each kind of writer to a slow reader."""
    loop = asyncio.get_running_loop()
    pool = random.Random(seed).randbytes(2 * LARGEST_WRITE)
    figures: Figures = {"bytes_per_writer": scale.backpressure_bytes, "high_water": HIGH_WATER}
    for name, writer in (("protocol", with_protocol), ("streams", with_streams)):
        readers: list[SlowReader] = []
        server = await loop.create_server(functools.partial(_make_reader, readers), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        watch = await writer(port, pool, chunks(seed, scale.backpressure_bytes))
        await readers[0].done
        server.close()
        watch.transport.close()
        await server.wait_closed()
        if (readers[0].received, readers[0].crc) != (watch.sent, watch.crc):
            raise AssertionError(
                f"{name}: sent {watch.sent} bytes (crc {watch.crc}), "
                f"received {readers[0].received} (crc {readers[0].crc})"
            )
        if watch.waits == 0:
            raise AssertionError(f"{name}: the writer never had to wait; the reader was not slow")
        growth = watch.rss_peak - watch.rss_before
        if growth > RSS_BOUND:
            raise AssertionError(f"{name}: RSS grew by {growth / 2**20:.1f} MiB")
        figures[name] = {
            "writes": watch.writes,
            "waits": watch.waits,
            "reader_pauses": readers[0].pauses,
            "largest_excess_over_high_water": watch.largest_excess,
            "rss_growth_mib": round(growth / 2**20, 1),
        }
    return figures
