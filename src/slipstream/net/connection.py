"""From a connected socket to a running (transport, protocol) pair, plain or TLS.

Shared by every way a stream connection comes to be: ``create_connection``,
``create_unix_connection``, ``connect_accepted_socket`` and a server's accept
loop.  For TLS, the TLS layer's protocol (:class:`slipstream.tls.layer.TLSLayer`)
sits between the socket transport and the application's protocol, as asyncio's
``SSLProtocol`` does; the application gets the TLS layer's own transport.
"""

from __future__ import annotations

import asyncio
import socket
import ssl as ssl_module
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..transports.socket_stream import ConnectionTracker, SocketTransport

if TYPE_CHECKING:
    from ..core import CoreLoop

__all__ = ["check_not_ssl_socket", "open_transport", "start_transport"]

ProtocolFactory = Callable[[], asyncio.BaseProtocol]


def check_not_ssl_socket(sock: object) -> None:
    """asyncio refuses an ``ssl.SSLSocket`` (it would bypass the TLS layer)."""
    if isinstance(sock, ssl_module.SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")


def start_transport(
    loop: CoreLoop,
    sock: socket.socket,
    protocol: asyncio.BaseProtocol,
    waiter: asyncio.Future[None] | None,
    *,
    sslcontext: ssl_module.SSLContext | None = None,
    use_tls: bool = False,
    server_side: bool = False,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    extra: dict[str, Any] | None = None,
    server: ConnectionTracker | None = None,
) -> asyncio.Transport:
    """Start the transport for ``sock``; returns the one the application sees.

    ``waiter`` completes once ``protocol.connection_made()`` has run (for TLS:
    once the handshake is done), or fails with the handshake's error.
    ``use_tls`` with ``sslcontext=None`` means ``ssl=True``: the TLS layer picks
    a default client context, as asyncio's does.
    """
    if not use_tls:
        return SocketTransport(loop, sock, protocol, waiter, extra, server)
    # Imported here: plain TCP must not depend on the TLS layer.
    from ..tls.layer import TLSLayer

    tls_protocol = TLSLayer(
        loop,
        protocol,
        sslcontext,
        waiter,
        server_side=server_side,
        server_hostname=server_hostname,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )
    SocketTransport(loop, sock, tls_protocol, None, extra, server)
    return tls_protocol.get_app_transport()


async def open_transport(
    loop: CoreLoop,
    sock: socket.socket,
    protocol_factory: ProtocolFactory,
    ssl: Any,
    server_hostname: str | None,
    *,
    server_side: bool = False,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    """Make the protocol and the transport for a connected ``sock``, and wait until it runs.

    The transport is closed if the wait fails (a TLS handshake error, or the
    caller being cancelled).
    """
    sock.setblocking(False)
    protocol = protocol_factory()
    waiter: asyncio.Future[None] = loop.create_future()
    transport = start_transport(
        loop,
        sock,
        protocol,
        waiter,
        sslcontext=None if isinstance(ssl, bool) else ssl,
        use_tls=bool(ssl),
        server_side=server_side,
        server_hostname=server_hostname,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )
    try:
        await waiter
    except BaseException:
        transport.close()
        raise
    return transport, protocol
