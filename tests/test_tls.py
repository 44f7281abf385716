"""TLS over real loopback sockets, on both loops, with a CA made at test time.

Data, closing and ``start_tls``; failures, flow control and argument checks
are in test_tls_errors.py.  The two modes (the loop's own TLS, or our layer by
hand over plain transports) are explained in test_tls_support.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import ssl
import threading
from typing import Any

import pytest

from tests.test_tls_certs import tls_material
from tests.test_tls_support import (
    HOST,
    MODES,
    Collector,
    Echo,
    Run,
    collect_errors,
    or_skip,
    port_of,
    recv_exactly,
    server_tls_socket,
    start_tls,
    thread_peer,
    tls_connect,
    tls_server,
)


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """Whose TLS: the loop's own (``loop``) or our layer over plain transports (``layer``)."""
    return str(request.param)


@pytest.fixture
def handler_calls() -> list[dict[str, Any]]:
    """What the loop's exception handler received (once a test calls collect_errors)."""
    return []


# -- echo and big transfers ----------------------------------------------------------------


def test_echo(run: Run, mode: str, handler_calls: list[dict[str, Any]]) -> None:
    async def main() -> None:
        collect_errors(handler_calls)
        server = await tls_server(mode, Echo)
        transport, client = await tls_connect(mode, Collector, port_of(server))
        transport.write(b"hello ")
        transport.writelines([b"TLS", bytearray(b" "), memoryview(b"world")])
        assert await client.read_at_least(15) == b"hello TLS world"
        transport.close()
        assert transport.is_closing()
        assert await client.lost is None
        server.close()
        await server.wait_closed()

    run(main())
    assert handler_calls == []


def test_extra_info(run: Run, mode: str) -> None:
    async def main() -> None:
        server = await tls_server(mode, Echo)
        context = tls_material().client_context()
        transport, _client = await tls_connect(mode, Collector, port_of(server), context)
        sslobj = transport.get_extra_info("ssl_object")
        assert isinstance(sslobj, ssl.SSLObject)
        assert transport.get_extra_info("sslcontext") is context
        assert transport.get_extra_info("cipher") == sslobj.cipher()
        assert transport.get_extra_info("compression") == sslobj.compression()
        peercert = transport.get_extra_info("peercert")
        assert dict(x[0] for x in peercert["subject"])["commonName"] == "localhost"
        assert transport.get_extra_info("socket").family == socket.AF_INET
        assert transport.get_extra_info("peername") == (HOST, port_of(server))
        assert transport.get_extra_info("sockname")[0] == HOST
        assert transport.get_extra_info("no such key", "dflt") == "dflt"
        assert not transport.can_write_eof()
        with pytest.raises(NotImplementedError):
            transport.write_eof()
        with pytest.raises(TypeError, match="data: expecting a bytes-like instance, got str"):
            transport.write("text")  # type: ignore[arg-type]
        transport.close()
        server.close()
        await server.wait_closed()

    run(main())


def test_big_transfer_both_ways_with_checksum(run: Run, mode: str) -> None:
    size = 20 * 1024 * 1024
    chunk = 256 * 1024

    async def main() -> None:
        server = await tls_server(mode, Echo)
        transport, client = await tls_connect(mode, Collector, port_of(server))
        sent = hashlib.sha256()
        block = os.urandom(chunk)
        for i in range(size // chunk):
            await client.writable.wait()
            piece = block[i % 7 :] + block[: i % 7]
            sent.update(piece)
            transport.write(piece)
        echoed = await client.read_at_least(size)
        assert len(echoed) == size
        assert hashlib.sha256(echoed).digest() == sent.digest()
        transport.close()
        await client.lost
        server.close()
        await server.wait_closed()

    run(main())


class Buffered(asyncio.BufferedProtocol):
    """A buffered protocol with a tiny buffer, to exercise partial fills."""

    def __init__(self) -> None:
        self.buffer = bytearray(3)
        self.data = bytearray()
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data += self.buffer[:nbytes]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)


def test_buffered_protocol(run: Run, mode: str) -> None:
    payload = bytes(range(256)) * 40

    async def main() -> None:
        server = await tls_server(mode, Echo)
        transport, client = await tls_connect(mode, Buffered, port_of(server))
        transport.write(payload)
        async with asyncio.timeout(10):
            while len(client.data) < len(payload):
                await asyncio.sleep(0.01)
        assert client.data == payload
        transport.close()
        assert await client.lost is None
        server.close()
        await server.wait_closed()

    run(main())


def test_set_protocol_switches_delivery(run: Run, mode: str) -> None:
    async def main() -> None:
        server = await tls_server(mode, Echo)
        transport, first = await tls_connect(mode, Collector, port_of(server))
        transport.write(b"one")
        await first.read_at_least(3)
        second = Collector()
        transport.set_protocol(second)
        assert transport.get_protocol() is second
        transport.write(b"two")
        assert await second.read_at_least(3) == b"two"
        assert first.data == b"one"
        transport.close()
        assert await second.lost is None
        server.close()
        await server.wait_closed()

    run(main())


# -- closing ---------------------------------------------------------------------------------


def test_close_sends_close_notify(run: Run, mode: str) -> None:
    seen: list[str] = []

    def peer(conn: socket.socket) -> None:
        with server_tls_socket(conn) as tls:
            assert recv_exactly(tls, 5) == b"hello"
            tls.sendall(b"world")
            try:
                seen.append("close_notify" if tls.recv(100) == b"" else "data")
            except ssl.SSLEOFError:
                seen.append("ragged")
            tls.unwrap()  # answer with ours

    async def main(port: int) -> list[str]:
        transport, client = await tls_connect(mode, Collector, port)
        transport.write(b"hello")
        await client.read_at_least(5)
        transport.close()
        assert await client.lost is None
        return client.events

    with thread_peer(peer) as port:
        events = run(main(port))
    assert seen == ["close_notify"]
    # As in asyncio: the peer's answering close_notify is an EOF too.
    assert events == ["made", "data", "eof", "lost"]


def test_peer_close_notify_is_eof_then_clean_close(run: Run, mode: str) -> None:
    def peer(conn: socket.socket) -> None:
        with server_tls_socket(conn) as tls:
            tls.sendall(b"bye")
            tls.unwrap()  # sends close_notify, returns once ours comes back

    async def main(port: int) -> Collector:
        _transport, client = await tls_connect(mode, Collector, port)
        assert await client.lost is None
        return client

    with thread_peer(peer) as port:
        client = run(main(port))
    assert client.data == b"bye"
    assert client.events == ["made", "data", "eof", "lost"]


def test_ragged_eof_is_a_clean_eof(run: Run, mode: str) -> None:
    def peer(conn: socket.socket) -> None:
        tls = server_tls_socket(conn)
        tls.sendall(b"no close_notify")
        tls.close()  # just hang up, as many HTTPS servers do

    async def main(port: int) -> Collector:
        _transport, client = await tls_connect(mode, Collector, port)
        assert await client.lost is None
        return client

    with thread_peer(peer) as port:
        client = run(main(port))
    assert client.data == b"no close_notify"
    assert client.events == ["made", "data", "eof", "lost"]


def test_eof_received_returning_true_warns(
    run: Run, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    def peer(conn: socket.socket) -> None:
        with server_tls_socket(conn) as tls:
            tls.unwrap()

    async def main(port: int) -> None:
        def factory() -> Collector:
            collector = Collector()
            collector.eof_result = True
            return collector

        _transport, client = await tls_connect(mode, factory, port)
        assert await client.lost is None

    with caplog.at_level(logging.WARNING, logger="asyncio"), thread_peer(peer) as port:
        run(main(port))
    assert "returning true from eof_received() has no effect when using ssl" in caplog.text


def test_writes_after_close_are_dropped_then_warned(
    run: Run, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        server = await tls_server(mode, Echo)
        transport, client = await tls_connect(mode, Collector, port_of(server))
        transport.close()
        await client.lost
        for _ in range(8):
            transport.write(b"x")
        server.close()
        await server.wait_closed()

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        run(main())
    assert "SSL connection is closed" in caplog.text


def test_shutdown_timeout(run: Run, mode: str) -> None:
    release = threading.Event()

    def peer(conn: socket.socket) -> None:
        with server_tls_socket(conn) as tls:
            tls.sendall(b"hi")
            release.wait(10)  # never answers our close_notify

    async def main(port: int) -> None:
        try:
            transport, client = await tls_connect(mode, Collector, port, ssl_shutdown_timeout=0.3)
            await client.read_at_least(2)
            transport.close()
            exc = await client.lost
            assert isinstance(exc, TimeoutError)
            assert str(exc) == "SSL shutdown timed out"
        finally:
            release.set()

    with thread_peer(peer) as port:
        run(main(port))


# -- start_tls -----------------------------------------------------------------------------------


class StartTLSServer(asyncio.Protocol):
    """Speaks plain text until "STARTTLS", then echoes over TLS."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.tls_transport: asyncio.Transport | None = None
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.tls_transport is not None:
            self.tls_transport.write(data)
            return
        assert data == b"STARTTLS\n"
        self.transport.write(b"GO\n")
        asyncio.get_running_loop().create_task(self._upgrade())

    async def _upgrade(self) -> None:
        self.tls_transport = await start_tls(
            self.mode, self.transport, self, tls_material().server_context(), server_side=True
        )
        self.upgraded.set_result(None)


def test_start_tls_upgrade(run: Run, mode: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        servers: list[StartTLSServer] = []

        def factory() -> StartTLSServer:
            servers.append(StartTLSServer(mode))
            return servers[-1]

        server = await or_skip(loop.create_server(factory, HOST, 0))
        plain, client = await loop.create_connection(Collector, HOST, port_of(server))
        plain.write(b"STARTTLS\n")
        assert await client.read_at_least(3) == b"GO\n"
        client.data.clear()
        tls = await start_tls(
            mode, plain, client, tls_material().client_context(), server_hostname="localhost"
        )
        assert tls.get_protocol() is client
        assert client.events == ["made", "data"]  # no second connection_made
        await servers[0].upgraded
        tls.write(b"secret")
        assert await client.read_at_least(6) == b"secret"
        assert isinstance(tls.get_extra_info("ssl_object"), ssl.SSLObject)
        tls.close()
        assert await client.lost is None
        server.close()
        await server.wait_closed()

    run(main())


def test_start_tls_rejects_bad_arguments(run: Run, mode: str) -> None:
    async def main() -> None:
        expected = r"sslcontext is expected to be an instance of ssl\.SSLContext, got None"
        with pytest.raises(TypeError, match=expected):
            await start_tls(mode, None, None, None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"transport None is not supported by start_tls\(\)"):
            await start_tls(mode, None, None, tls_material().server_context())  # type: ignore[arg-type]

    run(main())


def test_start_tls_handshake_failure_closes_the_transport(run: Run, mode: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        servers: list[StartTLSServer] = []

        def factory() -> StartTLSServer:
            servers.append(StartTLSServer(mode))
            return servers[-1]

        loop.set_exception_handler(lambda _l, _c: None)
        server = await or_skip(loop.create_server(factory, HOST, 0))
        plain, client = await loop.create_connection(Collector, HOST, port_of(server))
        plain.write(b"STARTTLS\n")
        await client.read_at_least(3)
        with pytest.raises(ssl.SSLCertVerificationError):
            context = tls_material().client_context()
            await start_tls(mode, plain, client, context, server_hostname="wrong.example")
        assert plain.is_closing()
        server.close()
        await server.wait_closed()

    run(main())
