"""Soak: checksummed messages of random sizes over many TCP and Unix connections at once.

Every message is framed as ``(sequence, length, crc32)`` followed by its payload.
The receiving side checks each frame as it arrives (in order, intact) and, at
end of file, answers with what it saw: the count, the bytes and a CRC chained
over every payload.  The sender compares that with what it sent, so a byte lost,
duplicated or reordered anywhere fails the run.  Half the connections use
Protocols on both ends and half use streams; each round opens every connection
at once, and the descriptors and RSS are measured after each round.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import struct
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from .common import Figures, Scale, open_fds, raise_fd_limit, rss_bytes, wait_until

HEADER = struct.Struct("!III")  # sequence, payload length, crc32 of the payload
READ_SIZE = 256 * 1024
# After the first round (which warms up allocator arenas and caches), the RSS may
# grow by at most this much over all later rounds: "flat", with room for the
# noise of ~1,000 connections' 256 KiB reads landing in different glibc arenas.
RSS_GROWTH_LIMIT = 64 * 2**20


@dataclass
class Tally:
    """What one side of a connection sent or received."""

    messages: int = 0
    payload_bytes: int = 0
    chain: int = 0  # crc32 chained over every payload, in order

    def add(self, payload: bytes | memoryview) -> None:
        self.messages += 1
        self.payload_bytes += len(payload)
        self.chain = zlib.crc32(payload, self.chain)

    def summary(self) -> bytes:
        return f"{self.messages} {self.payload_bytes} {self.chain}\n".encode()


class FrameChecker:
    """Parses frames from a byte stream and fails on any one that is out of order or damaged."""

    def __init__(self) -> None:
        self.tally = Tally()
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        offset = 0
        view = memoryview(buffer)
        try:
            while len(buffer) - offset >= HEADER.size:
                sequence, length, crc = HEADER.unpack_from(buffer, offset)
                end = offset + HEADER.size + length
                if end > len(buffer):
                    break
                if sequence != self.tally.messages:
                    due = self.tally.messages
                    raise AssertionError(f"frame {sequence} came when {due} was due")
                with view[offset + HEADER.size : end] as payload:
                    if zlib.crc32(payload) != crc:
                        raise AssertionError(f"frame {sequence} ({length} bytes) is damaged")
                    self.tally.add(payload)
                offset = end
        finally:
            view.release()
        del buffer[:offset]

    def finish(self) -> bytes:
        if self._buffer:
            raise AssertionError(f"{len(self._buffer)} bytes of a partial frame at end of file")
        return self.tally.summary()


class CheckingServerProtocol(asyncio.Protocol):
    """The Protocol side: checks frames in ``data_received``, answers at EOF."""

    def __init__(self) -> None:
        self.checker = FrameChecker()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.checker.feed(data)

    def eof_received(self) -> bool:
        assert self.transport is not None
        self.transport.write(self.checker.finish())
        return False  # the transport closes once the answer is written


async def checking_stream_handler(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """The streams side: reads to EOF, checking, then answers."""
    checker = FrameChecker()
    while data := await reader.read(READ_SIZE):
        checker.feed(data)
    writer.write(checker.finish())
    await writer.drain()
    writer.close()
    await writer.wait_closed()


class SendingProtocol(asyncio.Protocol):
    """The Protocol client: honours pause/resume_writing, collects the answer."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.answer = bytearray()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._resumed: asyncio.Future[None] | None = None

    def pause_writing(self) -> None:
        self._resumed = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._resumed is not None:
            self._resumed.set_result(None)
            self._resumed = None

    async def writable(self) -> None:
        if self._resumed is not None:
            await self._resumed

    def data_received(self, data: bytes) -> None:
        self.answer += data

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None:
            self.closed.set_result(None)
        else:
            self.closed.set_exception(exc)


def frames(
    rng: random.Random, pool: bytes, count: int, largest: int, sent: Tally
) -> Iterator[bytes]:
    """``count`` frames with log-uniform payload sizes in [1, largest], tallied into ``sent``."""
    top = math.log(largest)
    for sequence in range(count):
        size = min(largest, max(1, int(math.exp(rng.uniform(0.0, top)))))
        start = rng.randrange(len(pool) - size)
        payload = pool[start : start + size]
        sent.add(payload)
        yield HEADER.pack(sequence, size, zlib.crc32(payload)) + payload


async def send_with_protocol(address: str | tuple[str, int], messages: Iterator[bytes]) -> bytes:
    loop = asyncio.get_running_loop()
    if isinstance(address, str):
        transport, protocol = await loop.create_unix_connection(SendingProtocol, address)
    else:
        transport, protocol = await loop.create_connection(SendingProtocol, *address)
    for frame in messages:
        transport.write(frame)
        await protocol.writable()
    transport.write_eof()
    await protocol.closed
    return bytes(protocol.answer)


async def send_with_streams(address: str | tuple[str, int], messages: Iterator[bytes]) -> bytes:
    if isinstance(address, str):
        reader, writer = await asyncio.open_unix_connection(address)
    else:
        reader, writer = await asyncio.open_connection(*address)
    for frame in messages:
        writer.write(frame)
        await writer.drain()
    writer.write_eof()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return answer


async def one_connection(
    address: str | tuple[str, int], streams: bool, seed: int, count: int, scale: Scale, pool: bytes
) -> int:
    sent = Tally()
    messages = frames(random.Random(seed), pool, count, scale.soak_max_message, sent)
    if streams:
        answer = await send_with_streams(address, messages)
    else:
        answer = await send_with_protocol(address, messages)
    if answer != sent.summary():
        raise AssertionError(f"sent {sent.summary()!r}, the receiver saw {answer!r} (seed {seed})")
    return sent.payload_bytes


async def soak(scale: Scale, seed: int = 14) -> Figures:
    """Run the soak; return its figures (messages, bytes, connections, fds and RSS per round)."""
    connections = scale.soak_tcp_connections + scale.soak_unix_connections
    raise_fd_limit(4 * connections + 256)
    # Rounded up, so at least scale.soak_messages are sent in all.
    per_connection = -(-scale.soak_messages // (scale.soak_rounds * connections))
    pool = random.Random(seed).randbytes(2 * scale.soak_max_message)
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="slipstream-soak-") as directory:
        backlog = min(connections + 16, 4096)
        servers = [
            await loop.create_server(CheckingServerProtocol, "127.0.0.1", 0, backlog=backlog),
            await asyncio.start_server(checking_stream_handler, "127.0.0.1", 0, backlog=backlog),
        ]
        tcp = [server.sockets[0].getsockname()[:2] for server in servers]
        unix = [os.path.join(directory, name) for name in ("protocol", "streams")]
        servers += [
            await loop.create_unix_server(CheckingServerProtocol, unix[0], backlog=backlog),
            await asyncio.start_unix_server(checking_stream_handler, unix[1], backlog=backlog),
        ]
        fds_before, rss_before = open_fds(), rss_bytes()
        fds_after_round: list[int] = []
        rss_after_round: list[int] = []
        total_bytes = 0
        for round_number in range(scale.soak_rounds):
            jobs = []
            for index in range(connections):
                streams = index % 2 == 1
                if index < scale.soak_tcp_connections:
                    address: str | tuple[str, int] = tcp[streams]
                else:
                    address = unix[streams]
                connection_seed = seed * 1_000_003 + round_number * connections + index
                jobs.append(
                    one_connection(address, streams, connection_seed, per_connection, scale, pool)
                )
            total_bytes += sum(await asyncio.gather(*jobs))
            # The server side closes after its answer is written: let it finish.
            await wait_until(lambda: open_fds() <= fds_before, 10.0, "server sides to close")
            fds_after_round.append(open_fds())
            rss_after_round.append(rss_bytes())
        for server in servers:
            server.close()
            await server.wait_closed()
    growth = rss_after_round[-1] - rss_after_round[0]
    if growth > RSS_GROWTH_LIMIT:
        raise AssertionError(
            f"RSS grew by {growth / 2**20:.1f} MiB after the first round "
            f"(bytes after each round: {rss_after_round})"
        )
    return {
        "messages": per_connection * connections * scale.soak_rounds,
        "payload_bytes": total_bytes,
        "concurrent_connections": {
            "tcp": scale.soak_tcp_connections,
            "unix": scale.soak_unix_connections,
        },
        "rounds": scale.soak_rounds,
        "fds_before": fds_before,
        "fds_after_each_round": fds_after_round,
        "rss_mib_before": round(rss_before / 2**20, 1),
        "rss_mib_after_each_round": [round(rss / 2**20, 1) for rss in rss_after_round],
        "rss_growth_mib_after_first_round": round(
            (rss_after_round[-1] - rss_after_round[0]) / 2**20, 1
        ),
    }
