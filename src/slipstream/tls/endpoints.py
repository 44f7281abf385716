"""``start_tls`` and the ``ssl=`` plumbing shared by the stream endpoints."""

from __future__ import annotations

import asyncio
import ssl

from ..core import CoreLoop
from .layer import TLSLayer


class TLSSupport(CoreLoop):
    """``start_tls``."""

    async def start_tls(
        self,
        transport: asyncio.BaseTransport,
        protocol: asyncio.BaseProtocol,
        sslcontext: ssl.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> asyncio.Transport:
        """Upgrade ``transport`` to TLS; return the transport ``protocol`` must use from now on.

        ``protocol`` is not told ``connection_made`` again: it already is
        connected.  If the handshake fails (or this is cancelled) the
        original transport is closed.
        """
        if not isinstance(sslcontext, ssl.SSLContext):
            raise TypeError(
                f"sslcontext is expected to be an instance of ssl.SSLContext, got {sslcontext!r}"
            )
        # The marker asyncio uses: a transport whose protocol can be swapped
        # under it and whose reading can be paused (socket transports, and
        # TLS transports for TLS in TLS).
        if not getattr(transport, "_start_tls_compatible", False):
            raise TypeError(f"transport {transport!r} is not supported by start_tls()")
        stream: asyncio.Transport = transport  # type: ignore[assignment]

        waiter: asyncio.Future[None] = self.create_future()
        layer = TLSLayer(
            self,
            protocol,
            sslcontext,
            waiter,
            server_side=server_side,
            server_hostname=server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
            call_connection_made=False,
        )
        app_transport = layer.get_app_transport()

        # Pause first, so no plaintext-era data_received reaches the layer
        # before its connection_made; both steps run on the next iteration.
        stream.pause_reading()
        stream.set_protocol(layer)
        made = self.call_soon(layer.connection_made, stream)
        resumed = self.call_soon(stream.resume_reading)
        try:
            await waiter
        except BaseException:
            stream.close()
            made.cancel()
            resumed.cancel()
            raise
        return app_transport
