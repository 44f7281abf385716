"""The hot I/O paths keep asyncio's behaviour at their edges (run on asyncio and slipstream).

The socket transport's ``write()`` tests ``type(data) is bytes`` before anything
else, and its reads change size with the traffic (64 KiB, more while the peer
keeps filling whole reads).  These tests check what that must not change: every
bytes-like kind is accepted and counted in bytes, a bytearray can be reused as
soon as ``write()`` returns, and messages of every size, in any order, arrive
intact.  The ``sock_*`` operations' fast paths are checked the same way.
"""

from __future__ import annotations

import array
import asyncio
import os
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

Run = Callable[[Coroutine[Any, Any, Any]], Any]

GUARD = 30.0  # seconds; a hang guard, never reached when the loop is right


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class Collector(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = bytearray()
        self.grew = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.grew.set()

    async def take(self, size: int) -> bytes:
        while len(self.data) < size:
            self.grew.clear()
            await asyncio.wait_for(self.grew.wait(), GUARD)
        taken = bytes(self.data[:size])
        del self.data[:size]
        return taken


class Bytes(bytes):
    """A bytes subclass: bytes-like, but not ``type(data) is bytes``."""


async def echo_pair() -> tuple[asyncio.Server, asyncio.Transport, Collector]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", 0)
    address = server.sockets[0].getsockname()
    transport, collector = await loop.create_connection(Collector, *address)
    assert isinstance(transport, asyncio.Transport)
    assert isinstance(collector, Collector)
    return server, transport, collector


async def shut(server: asyncio.Server, transport: asyncio.Transport) -> None:
    transport.close()
    server.close()
    await server.wait_closed()


def test_write_takes_every_bytes_like_kind(run: Run) -> None:
    async def main() -> list[bytes]:
        server, transport, collector = await echo_pair()
        received = []
        reused = bytearray(b"bytearray")
        transport.write(reused)
        reused[:] = b"XXXXXXXXX"  # the caller may reuse it once write() returned
        received.append(await collector.take(9))
        transport.write(Bytes(b"subclass"))
        received.append(await collector.take(8))
        transport.write(memoryview(b"view of bytes")[8:])
        received.append(await collector.take(5))
        words = array.array("i", [1, 2, 3])
        transport.write(memoryview(words))  # counted in bytes, not items
        received.append(await collector.take(len(words) * words.itemsize))
        with pytest.raises(TypeError, match="not 'str'"):
            transport.write("text")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="not 'int'"):
            transport.write(1)  # type: ignore[arg-type]
        await shut(server, transport)
        return received

    assert run(main()) == [
        b"bytearray",
        b"subclass",
        b"bytes",
        array.array("i", [1, 2, 3]).tobytes(),
    ]


@pytest.mark.parametrize("sizes", [
    [1024, 100 * 1024, 1024, 1024 * 1024, 10, 300 * 1024, 64 * 1024, 1],
])
def test_messages_of_changing_sizes_arrive_intact(run: Run, sizes: list[int]) -> None:
    async def main() -> bool:
        server, transport, collector = await echo_pair()
        for size in sizes:
            message = os.urandom(size)
            transport.write(message)
            if await collector.take(size) != message:
                return False
        await shut(server, transport)
        return True

    assert run(main())


def test_a_stream_of_writes_in_one_turn_arrives_in_order(run: Run) -> None:
    async def main() -> bytes:
        server, transport, collector = await echo_pair()
        chunks = [bytes([i % 256]) * (i * 997 % 70000 + 1) for i in range(60)]
        for chunk in chunks:
            transport.write(chunk)  # queued behind each other once the kernel is full
        total = sum(map(len, chunks))
        echoed = await collector.take(total)
        await shut(server, transport)
        return echoed if echoed == b"".join(chunks) else b"mismatch"

    assert run(main()) != b"mismatch"


def test_sock_fast_paths_and_their_checks(run: Run) -> None:
    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        with a, b:
            await loop.sock_sendall(a, Bytes(b"sub"))
            await loop.sock_sendall(a, bytearray(b"array"))
            await loop.sock_sendall(a, memoryview(b"view")[1:])
            got = b""
            while len(got) < 11:
                got += await asyncio.wait_for(loop.sock_recv(b, 100), GUARD)
            with pytest.raises(TypeError):
                await loop.sock_sendall(a, "text")  # type: ignore[arg-type]
            return [got]

    assert run(main()) == [b"subarrayiew"]
