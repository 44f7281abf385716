"""Shared pieces of the TLS socket tests (test_tls.py, test_tls_errors.py); no tests here.

Each TLS test runs in two modes:

* ``loop``: TLS as the loop provides it (``create_connection(ssl=...)``,
  ``loop.start_tls``).  On stock asyncio that is asyncio's own SSLProtocol, so
  these runs pin down the reference behaviour; on slipstream it is our layer.
* ``layer``: our :class:`~slipstream.tls.layer.TLSLayer` installed by hand
  over a *plain* connection (and our ``start_tls`` called on the loop), so
  that on stock asyncio our layer runs over asyncio's own socket transports.

Peers that must behave in a precise way (answer close_notify or not, hang up
raggedly, send garbage) are blocking ``ssl`` sockets in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from slipstream.tls.endpoints import TLSSupport
from slipstream.tls.layer import TLSLayer
from tests.test_tls_certs import tls_material

T = TypeVar("T")
P = TypeVar("P", bound=asyncio.BaseProtocol)
Run = Callable[[Coroutine[Any, Any, Any]], Any]
HOST = "127.0.0.1"
MODES = ["loop", "layer"]


async def or_skip(coro: Coroutine[Any, Any, T]) -> T:
    # Plain TCP on the slipstream loop is another part of the project; until
    # it lands these tests skip there instead of failing.
    try:
        return await coro
    except NotImplementedError:
        pytest.skip("this loop has no TCP endpoints yet")


# -- protocols -------------------------------------------------------------------------


class Collector(asyncio.Protocol):
    """Records everything that happens to it; lets a test wait for bytes."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.data = bytearray()
        self.events: list[str] = []
        self.made: asyncio.Future[None] = loop.create_future()
        self.eof: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[BaseException | None] = loop.create_future()
        self.writable = asyncio.Event()
        self.writable.set()
        self.paused_at: int | None = None
        self._more = asyncio.Event()
        self.eof_result: bool | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.events.append("made")
        self.made.set_result(None)

    def data_received(self, data: bytes) -> None:
        if not self.events or self.events[-1] != "data":
            self.events.append("data")
        self.data += data
        self._more.set()

    def eof_received(self) -> bool | None:
        self.events.append("eof")
        self.eof.set_result(None)
        self._more.set()
        return self.eof_result

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")
        self.lost.set_result(exc)
        self._more.set()

    def pause_writing(self) -> None:
        assert self.transport is not None
        self.paused_at = self.transport.get_write_buffer_size()
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    async def read_at_least(self, count: int) -> bytes:
        async with asyncio.timeout(20):
            while len(self.data) < count:
                if self.lost.done():
                    raise AssertionError(f"lost after {len(self.data)} of {count} bytes")
                self._more.clear()
                await self._more.wait()
        return bytes(self.data)


class Echo(asyncio.Protocol):
    """Echoes, with flow control: stops reading while its writes are paused."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()


# -- connecting, per mode ---------------------------------------------------------------


async def tls_connect(
    mode: str,
    factory: Callable[[], P],
    port: int,
    context: ssl.SSLContext | None = None,
    *,
    hostname: str = "localhost",
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
) -> tuple[asyncio.Transport, P]:
    """A TLS client connection in the given mode."""
    loop = asyncio.get_running_loop()
    if context is None:
        context = tls_material().client_context()
    if mode == "loop":
        return await or_skip(
            loop.create_connection(
                factory,
                HOST,
                port,
                ssl=context,
                server_hostname=hostname,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout,
            )
        )
    app = factory()
    waiter: asyncio.Future[None] = loop.create_future()
    layer = TLSLayer(
        loop,
        app,
        context,
        waiter,
        server_hostname=hostname,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )
    plain, _ = await or_skip(loop.create_connection(lambda: layer, HOST, port))
    try:
        await waiter
    except BaseException:
        plain.close()
        raise
    return layer.get_app_transport(), app


async def tls_server(mode: str, factory: Callable[[], asyncio.BaseProtocol]) -> asyncio.Server:
    """A TLS server on 127.0.0.1 in the given mode."""
    loop = asyncio.get_running_loop()
    context = tls_material().server_context()
    if mode == "loop":
        return await or_skip(loop.create_server(factory, HOST, 0, ssl=context))

    def layered() -> asyncio.BaseProtocol:
        return TLSLayer(loop, factory(), context, None, server_side=True)

    return await or_skip(loop.create_server(layered, HOST, 0))


async def start_tls(mode: str, transport: asyncio.BaseTransport, protocol: asyncio.BaseProtocol,
                    context: ssl.SSLContext, **kwargs: Any) -> asyncio.Transport:
    """``loop.start_tls``, or our ``start_tls`` run on the current loop."""
    loop = asyncio.get_running_loop()
    if mode == "loop":
        new = await loop.start_tls(transport, protocol, context, **kwargs)  # type: ignore[arg-type]
    else:
        new = await TLSSupport.start_tls(loop, transport, protocol, context, **kwargs)  # type: ignore[arg-type]
    assert new is not None
    return new


def port_of(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


@contextlib.contextmanager
def thread_peer(handler: Callable[[socket.socket], None]) -> Iterator[int]:
    """A one-connection server running ``handler(conn)`` in a thread; yields its port.

    Use it around ``run(...)``, not inside the coroutine: leaving it joins the
    thread, which may be waiting for the loop.
    """
    listener = socket.create_server((HOST, 0))
    listener.settimeout(10)
    errors: list[BaseException] = []

    def main() -> None:
        try:
            conn, _ = listener.accept()
            conn.settimeout(10)
            with conn:
                handler(conn)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        thread.join(15)
        listener.close()
    assert not thread.is_alive(), "the peer thread hung"
    if errors:
        raise errors[0]


def server_tls_socket(conn: socket.socket) -> ssl.SSLSocket:
    # suppress_ragged_eofs=False: recv() says b"" only for a real close_notify.
    return tls_material().server_context().wrap_socket(
        conn, server_side=True, suppress_ragged_eofs=False
    )


def recv_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise EOFError(f"got {len(data)} of {count} bytes")
        data += chunk
    return data


def collect_errors(calls: list[dict[str, Any]]) -> None:
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: calls.append(ctx))
