"""TLS failures, flow control and argument checks, over loopback sockets, on both loops.

The two modes (the loop's own TLS, or our layer by hand over plain
transports) are explained in test_tls_support.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import ssl
import threading
from typing import Any

import pytest

from slipstream.tls.layer import TLSLayer
from tests.conftest import unexpected_reports
from tests.test_tls_support import (
    HOST,
    MODES,
    Collector,
    Echo,
    Run,
    collect_errors,
    port_of,
    recv_exactly,
    server_tls_socket,
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


# -- failures ----------------------------------------------------------------------------------


def test_wrong_hostname_fails_verification(
    run: Run, mode: str, handler_calls: list[dict[str, Any]]
) -> None:
    async def main() -> None:
        collect_errors(handler_calls)
        server = await tls_server(mode, Echo)
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            await tls_connect(mode, Collector, port_of(server), hostname="example.com")
        assert info.value.reason == "CERTIFICATE_VERIFY_FAILED"
        assert "example.com" in str(info.value)
        await asyncio.sleep(0.05)
        server.close()
        await server.wait_closed()

    run(main())
    # SSL errors are OSErrors: asyncio does not report them (outside debug mode).
    assert unexpected_reports(handler_calls) == []


def test_unknown_ca_fails_verification(run: Run, mode: str) -> None:
    async def main() -> None:
        server = await tls_server(mode, Echo)
        context = ssl.create_default_context()
        with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
            await tls_connect(mode, Collector, port_of(server), context)
        server.close()
        await server.wait_closed()

    run(main())


def test_handshake_timeout(run: Run, mode: str, handler_calls: list[dict[str, Any]]) -> None:
    async def main() -> None:
        collect_errors(handler_calls)
        with socket.create_server((HOST, 0)) as silent:  # accepts, never speaks
            port = silent.getsockname()[1]
            made: list[str] = []

            class Never(Collector):
                def connection_made(self, transport: asyncio.BaseTransport) -> None:
                    made.append("made")

            with pytest.raises(
                ConnectionAbortedError,
                match=r"SSL handshake is taking longer than 0\.3 seconds: aborting the connection",
            ):
                await tls_connect(mode, Never, port, ssl_handshake_timeout=0.3)
            assert made == []

    run(main())
    assert handler_calls == []


def test_connection_lost_during_handshake(run: Run, mode: str) -> None:
    def peer(conn: socket.socket) -> None:
        conn.recv(1024)  # the ClientHello; then hang up

    events: list[str] = []

    async def main(port: int) -> None:
        class Recorder(Collector):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                events.append("made")

            def connection_lost(self, exc: Exception | None) -> None:
                events.append("lost")

        asyncio.get_running_loop().set_exception_handler(lambda _l, _c: None)
        with pytest.raises(ConnectionResetError):
            await tls_connect(mode, Recorder, port)
        await asyncio.sleep(0.05)

    with thread_peer(peer) as port:
        run(main(port))
    assert events == []


def test_corrupted_stream_is_an_ssl_error(run: Run, mode: str) -> None:
    def peer(conn: socket.socket) -> None:
        raw = conn.dup()
        with server_tls_socket(conn) as tls:
            tls.sendall(b"ok")
            recv_exactly(tls, 1)
            raw.sendall(b"\x17\x03\x03\x00\x10this is no record")
            raw.close()
            with contextlib.suppress(OSError):
                tls.recv(10)

    async def main(port: int) -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _l, _c: None)
        transport, client = await tls_connect(mode, Collector, port)
        await client.read_at_least(2)
        transport.write(b"!")
        exc = await client.lost
        assert isinstance(exc, ssl.SSLError)
        assert client.events == ["made", "data", "lost"]

    with thread_peer(peer) as port:
        run(main(port))


# -- flow control ----------------------------------------------------------------------------


def test_write_flow_control_pauses_and_resumes_the_app(run: Run, mode: str) -> None:
    go = threading.Event()
    received: list[int] = []

    def peer(conn: socket.socket) -> None:
        with server_tls_socket(conn) as tls:
            go.wait(10)  # not reading yet: everything backs up
            total = 0
            while chunk := tls.recv(1 << 16):
                total += len(chunk)
            received.append(total)

    async def main(port: int) -> int:
        transport, client = await tls_connect(mode, Collector, port)
        transport.set_write_buffer_limits(high=64 * 1024)
        assert transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        written = 0
        try:
            while client.writable.is_set():
                transport.write(b"x" * 65536)
                written += 65536
                assert written < 256 * 1024 * 1024, "never paused"
                await asyncio.sleep(0)
            assert client.paused_at is not None and client.paused_at >= 64 * 1024
            assert transport.get_write_buffer_size() >= 64 * 1024
        finally:
            go.set()
        async with asyncio.timeout(10):
            await client.writable.wait()
        assert transport.get_write_buffer_size() <= 16 * 1024
        transport.close()
        await client.lost
        return written

    with thread_peer(peer) as port:
        written = run(main(port))
    assert received == [written]


def test_read_flow_control_pauses_the_socket(run: Run, mode: str) -> None:
    size = 8 * 1024 * 1024
    payload = os.urandom(size)

    def peer(conn: socket.socket) -> None:
        with server_tls_socket(conn) as tls:
            tls.sendall(payload)
            tls.unwrap()

    async def main(port: int) -> None:
        class Paused(Collector):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                self.transport.pause_reading()  # type: ignore[union-attr]

        transport, client = await tls_connect(mode, Paused, port)
        assert not transport.is_reading()
        await asyncio.sleep(0.3)
        assert client.data == b""
        # The layer stopped reading the socket: what waits undecrypted is bounded.
        assert transport.get_read_buffer_size() <= 1024 * 1024  # type: ignore[attr-defined]
        transport.resume_reading()
        assert transport.is_reading()
        data = await client.read_at_least(size)
        assert hashlib.sha256(data).digest() == hashlib.sha256(payload).digest()
        assert await client.lost is None

    with thread_peer(peer) as port:
        run(main(port))


# -- argument checks and error reporting ------------------------------------------------------


def test_bad_limits_and_timeouts(run: Run, mode: str) -> None:
    async def main() -> None:
        server = await tls_server(mode, Echo)
        port = port_of(server)
        for name in ("ssl_handshake_timeout", "ssl_shutdown_timeout"):
            with pytest.raises(ValueError, match=f"{name} should be a positive number, got -1"):
                await tls_connect(mode, Collector, port, **{name: -1})  # type: ignore[arg-type]
        transport, client = await tls_connect(mode, Collector, port)
        with pytest.raises(ValueError, match=r"high \(1\) must be >= low \(2\) must be >= 0"):
            transport.set_write_buffer_limits(high=1, low=2)
        transport.set_write_buffer_limits(low=1000)
        assert transport.get_write_buffer_limits() == (1000, 4000)
        transport.close()
        await client.lost
        server.close()
        await server.wait_closed()

    run(main())


def test_server_side_needs_a_context() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with pytest.raises(ValueError, match="Server side SSL needs a valid SSLContext"):
            TLSLayer(loop, Collector(), None, None, server_side=True)

    asyncio.run(main())


def test_protocol_error_goes_to_the_exception_handler(
    run: Run, mode: str, handler_calls: list[dict[str, Any]]
) -> None:
    boom = RuntimeError("boom")

    class Failing(Collector):
        def data_received(self, data: bytes) -> None:
            raise boom

    async def main() -> None:
        collect_errors(handler_calls)
        server = await tls_server(mode, Echo)
        transport, client = await tls_connect(mode, Failing, port_of(server))
        transport.write(b"x")
        assert await client.lost is boom
        server.close()
        await server.wait_closed()

    run(main())
    assert [(c["message"], c["exception"]) for c in handler_calls] == [
        ("Fatal error on SSL protocol", boom)
    ]


def test_debug_mode_logs_the_handshake(
    run: Run, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        asyncio.get_running_loop().set_debug(True)
        server = await tls_server(mode, Echo)
        transport, client = await tls_connect(mode, Collector, port_of(server))
        transport.close()
        await client.lost
        with pytest.raises(ssl.SSLCertVerificationError):
            await tls_connect(mode, Collector, port_of(server), hostname="example.com")
        server.close()
        await server.wait_closed()

    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        run(main())
    assert "starts SSL handshake" in caplog.text
    assert "SSL handshake took" in caplog.text
    assert "SSL handshake failed on verifying the certificate" in caplog.text
