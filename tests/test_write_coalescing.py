"""Write coalescing in the stream transport: bursts leave in one system call, intact.

A connection that writes twice with nothing read in between gathers the writes
of each later burst and sends them together after the turn's callbacks (see
"Coalescing" in transports/socket_stream.py).  These tests run on stock asyncio
too, where that applies: what must not change is what the peer receives, in
what order, and what the protocol is told (pause/resume, EOF, connection_lost).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

Run = Callable[[Coroutine[Any, Any, Any]], Any]


class BurstServer(asyncio.Protocol):
    """Answers each 4-byte request ``n`` with burst ``n`` of ``bursts``, one write per chunk."""

    def __init__(self, bursts: list[list[bytes]]) -> None:
        self.bursts = bursts
        self.pending = b""
        self.events: list[str] = []
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.pending += data
        while len(self.pending) >= 4:
            index = int.from_bytes(self.pending[:4], "big")
            self.pending = self.pending[4:]
            for number, chunk in enumerate(self.bursts[index]):
                # Every kind write() takes, in turn.
                kind = number % 3
                self.transport.write(
                    chunk if kind == 0 else bytearray(chunk) if kind == 1 else memoryview(chunk)
                )

    def pause_writing(self) -> None:
        self.events.append("pause_writing")

    def resume_writing(self) -> None:
        self.events.append("resume_writing")

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)


def random_bursts(seed: int, count: int) -> list[list[bytes]]:
    rng = random.Random(seed)
    sizes = [1, 2, 100, 1023, 1024, 4096, 16 * 1024, 65535, 65536, 65537, 200 * 1024]
    bursts = []
    for _ in range(count):
        chunks = [rng.randbytes(rng.choice(sizes)) for _ in range(rng.randint(1, 6))]
        bursts.append(chunks)
    return bursts


async def open_burst_server(
    bursts: list[list[bytes]],
) -> tuple[asyncio.Server, list[BurstServer], asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    protocols: list[BurstServer] = []

    def factory() -> BurstServer:
        protocols.append(BurstServer(bursts))
        return protocols[-1]

    server = await loop.create_server(factory, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
    return server, protocols, reader, writer


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bursts_arrive_in_order_and_intact(run: Run, seed: int) -> None:
    bursts = random_bursts(seed, 40)

    async def main() -> list[str]:
        server, protocols, reader, writer = await open_burst_server(bursts)
        for index, chunks in enumerate(bursts):
            writer.write(index.to_bytes(4, "big"))
            expected = b"".join(chunks)
            got = await asyncio.wait_for(reader.readexactly(len(expected)), 10)
            assert hashlib.sha256(got).digest() == hashlib.sha256(expected).digest(), index
        # Pipelined: many requests at once, answers back to back, in order.
        writer.write(b"".join(i.to_bytes(4, "big") for i in range(len(bursts))))
        expected = b"".join(b"".join(chunks) for chunks in bursts)
        got = await asyncio.wait_for(reader.readexactly(len(expected)), 20)
        assert hashlib.sha256(got).digest() == hashlib.sha256(expected).digest()
        writer.close()
        await writer.wait_closed()
        assert await asyncio.wait_for(protocols[0].lost, 5) is None
        server.close()
        await server.wait_closed()
        return protocols[0].events

    events = run(main())
    # pause/resume come in pairs, if at all.
    assert events == ["pause_writing", "resume_writing"] * (len(events) // 2)


class CountingSocket(socket.socket):
    """A socket that counts the calls that hand data to the kernel."""

    sends = 0

    def send(self, data: Any, flags: int = 0) -> int:
        self.sends += 1
        return super().send(data, flags)

    def sendmsg(self, *args: Any) -> int:
        self.sends += 1
        return super().sendmsg(*args)


def count_sends_per_burst(loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> list[int]:
    bursts = [[b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", b"hello"]]

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        counting = CountingSocket(fileno=ours.detach())
        counting.setblocking(False)
        transport, protocol = await loop.connect_accepted_socket(
            lambda: BurstServer(bursts), counting
        )
        theirs.setblocking(False)
        per_burst = []
        for _ in range(6):
            before = counting.sends
            await loop.sock_sendall(theirs, (0).to_bytes(4, "big"))
            expected = len(b"".join(bursts[0]))
            got = b""
            while len(got) < expected:
                got += await loop.sock_recv(theirs, 1024)
            assert got == b"".join(bursts[0])
            per_burst.append(counting.sends - before)
        transport.close()
        assert isinstance(protocol, BurstServer)
        await protocol.lost
        theirs.close()
        return per_burst

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())


def test_a_burst_leaves_in_one_system_call(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], request: pytest.FixtureRequest
) -> None:
    per_burst = count_sends_per_burst(loop_factory)
    if "slipstream" in request.node.callspec.id:
        # The first burst shows the pattern (two calls); every later one is one.
        assert per_burst == [2, 1, 1, 1, 1, 1]
    else:
        assert per_burst == [2] * 6  # asyncio sends each write at once


class Echo(asyncio.Protocol):
    def __init__(self) -> None:
        self.sizes: list[int] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)
        self.sizes.append(self.transport.get_write_buffer_size())


def test_an_echo_never_holds_a_write(run: Run) -> None:
    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        transport, protocol = await loop.connect_accepted_socket(Echo, ours)
        theirs.setblocking(False)
        for number in range(20):
            await loop.sock_sendall(theirs, b"%d" % number)
            await loop.sock_recv(theirs, 100)
        transport.close()
        theirs.close()
        assert isinstance(protocol, Echo)
        return protocol.sizes

    assert run(main()) == [0] * 20  # sent at once, as asyncio does


async def coalescing_connection(
    chunks: list[bytes],
) -> tuple[asyncio.Transport, BurstServer, socket.socket]:
    """A server connection that has shown a burst (so it gathers) and its peer socket."""
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    transport, protocol = await loop.connect_accepted_socket(lambda: BurstServer([chunks]), ours)
    theirs.setblocking(False)
    await loop.sock_sendall(theirs, (0).to_bytes(4, "big"))
    expected = len(b"".join(chunks))
    got = b""
    while len(got) < expected:
        got += await loop.sock_recv(theirs, expected)
    assert isinstance(protocol, BurstServer)
    return transport, protocol, theirs


async def read_to_eof(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while chunk := await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), 5):
        data += chunk
    return data


@pytest.mark.parametrize("ending", ["close", "write_eof"])
def test_close_and_write_eof_deliver_a_held_burst_first(run: Run, ending: str) -> None:
    async def main() -> bytes:
        transport, protocol, theirs = await coalescing_connection([b"a", b"b"])
        transport.write(b"held ")
        transport.write(b"burst")
        getattr(transport, ending)()
        data = await read_to_eof(theirs)
        if ending == "write_eof":
            assert not transport.is_closing()  # the other direction stays open
            transport.close()
        assert await protocol.lost is None
        theirs.close()
        return data

    assert run(main()) == b"held burst"


def test_abort_still_offers_a_held_burst_to_the_kernel(run: Run) -> None:
    async def main() -> bytes:
        transport, protocol, theirs = await coalescing_connection([b"a", b"b"])
        transport.write(b"sent at ")
        transport.write(b"write time")
        transport.abort()
        assert await protocol.lost is None
        data = await read_to_eof(theirs)
        theirs.close()
        return data

    assert run(main()) == b"sent at write time"


def test_a_held_burst_over_the_high_water_mark_goes_out_at_once(run: Run) -> None:
    async def main() -> tuple[int, list[str]]:
        transport, protocol, theirs = await coalescing_connection([b"a", b"b"])
        transport.set_write_buffer_limits(high=1000)
        transport.write(b"x" * 600)
        transport.write(b"y" * 600)  # over the mark: handed to the kernel now
        size = transport.get_write_buffer_size()
        data = b""
        while len(data) < 1200:
            data += await asyncio.get_running_loop().sock_recv(theirs, 4096)
        assert data == b"x" * 600 + b"y" * 600
        transport.close()
        await protocol.lost
        theirs.close()
        return size, protocol.events

    # The kernel took it all: nothing buffered, and no pause_writing (asyncio alike).
    assert run(main()) == (0, [])
