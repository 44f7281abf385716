"""The TLS layer over an in-memory transport pair: no sockets, deterministic flow control.

:class:`MemoryTransport` implements only the public transport API and feeds
its peer through ``data_received`` (not ``get_buffer``), so these tests also
cover transports that do not speak the buffered protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from slipstream.tls.layer import TLSLayer
from tests.test_tls_certs import tls_material

Run = Callable[[Coroutine[Any, Any, Any]], Any]


class MemoryTransport(asyncio.Transport):
    """One end of an in-memory byte pipe; writes reach the peer on the next loop turn."""

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: asyncio.BaseProtocol) -> None:
        super().__init__()
        self.loop = loop
        self.protocol: Any = protocol
        self.peer: MemoryTransport | None = None
        self.closing = False
        self.reading = True
        self.held: list[bytes] = []  # writes while the test holds the pipe
        self.hold = False
        self.written = 0

    def write(self, data: Any) -> None:
        if self.closing:
            return
        data = bytes(data)
        self.written += len(data)
        if self.hold:
            self.held.append(data)
        elif self.peer is not None:
            self.loop.call_soon(self.peer.deliver, data)

    def deliver(self, data: bytes) -> None:
        if not self.closing:
            self.protocol.data_received(data)

    def release(self) -> None:
        self.hold = False
        for data in self.held:
            self.write(data)
        self.held.clear()

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.loop.call_soon(self.protocol.connection_lost, None)
            if self.peer is not None and not self.peer.closing:
                self.loop.call_soon(self.peer.peer_eof)

    def peer_eof(self) -> None:
        if not self.closing and not self.protocol.eof_received():
            self.close()

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.protocol  # type: ignore[no-any-return]

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("memory", 1)}.get(name, default)


class Recorder(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.data = bytearray()
        self.events: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> None:
        self.events.append("eof")

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append(f"lost:{exc!r}")

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")


async def connect_pair() -> tuple[TLSLayer, Recorder, MemoryTransport, TLSLayer, Recorder]:
    loop = asyncio.get_running_loop()
    material = tls_material()
    client_app, server_app = Recorder(), Recorder()
    waiter: asyncio.Future[None] = loop.create_future()
    client = TLSLayer(
        loop, client_app, material.client_context(), waiter, server_hostname="localhost"
    )
    server = TLSLayer(loop, server_app, material.server_context(), None, server_side=True)
    to_server, to_client = MemoryTransport(loop, client), MemoryTransport(loop, server)
    to_server.peer, to_client.peer = to_client, to_server
    server.connection_made(to_client)
    client.connection_made(to_server)
    await asyncio.wait_for(waiter, 5)
    return client, client_app, to_server, server, server_app


async def turns(count: int = 20) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


def test_echo_over_memory(run: Run) -> None:
    async def main() -> None:
        client, client_app, _pipe, _server, server_app = await connect_pair()
        assert client_app.events == ["made"]
        await turns()
        assert server_app.events == ["made"]
        transport = client.get_app_transport()
        assert transport.get_extra_info("peername") == ("memory", 1)
        transport.write(b"over memory")
        await turns()
        assert server_app.data == b"over memory"
        assert server_app.transport is not None
        server_app.transport.write(b"and back")
        await turns()
        assert client_app.data == b"and back"
        transport.close()
        await turns()
        assert client_app.events == ["made", "eof", "lost:None"]
        assert server_app.events == ["made", "eof", "lost:None"]

    run(main())


def test_a_paused_transport_makes_the_app_pause(run: Run) -> None:
    async def main() -> None:
        client, client_app, pipe, _server, server_app = await connect_pair()
        transport = client.get_app_transport()
        transport.set_write_buffer_limits(high=10_000)
        # The byte transport says its buffer is full: ciphertext waits in the layer.
        client.pause_writing()
        transport.write(b"a" * 6_000)
        assert client_app.events == ["made"]
        assert transport.get_write_buffer_size() > 6_000  # record overhead included
        transport.write(b"b" * 6_000)
        assert client_app.events == ["made", "pause"]
        written = pipe.written
        client.resume_writing()
        assert pipe.written > written  # everything went out at once
        assert transport.get_write_buffer_size() == 0
        assert client_app.events == ["made", "pause", "resume"]
        await turns()
        assert server_app.data == b"a" * 6_000 + b"b" * 6_000
        transport.close()
        await turns()

    run(main())


def test_undecrypted_input_pauses_the_transport(run: Run) -> None:
    async def main() -> None:
        client, client_app, pipe, _server, server_app = await connect_pair()
        await turns()
        transport = client.get_app_transport()
        transport.pause_reading()
        assert server_app.transport is not None
        for _ in range(6):
            server_app.transport.write(b"z" * 65536)
            await turns(3)
        # 384 KiB arrived undecrypted: past the 256 KiB mark, the pipe is paused.
        assert client_app.data == b""
        assert not pipe.is_reading()
        assert transport.get_read_buffer_size() >= 256 * 1024
        transport.resume_reading()
        await turns()
        assert pipe.is_reading()
        assert client_app.data == b"z" * 6 * 65536
        transport.close()
        await turns()

    run(main())
