"""TLS as a protocol between a byte transport and the application's protocol.

Give a :class:`TLSLayer` to any stream transport as that transport's
protocol (slipstream's socket transport, or stock asyncio's: only the public
transport API is used), and hand the application
:meth:`TLSLayer.get_app_transport`, an :class:`SSLTransport`.
This is the role of asyncio's ``sslproto.SSLProtocol``; the TLS itself is the
sans-I/O :class:`~slipstream.tls.pump.TLSPump`, and this module only adds
what needs a loop: the handshake and shutdown timeouts, flow control in both
directions, and the asyncio callbacks, exceptions and log messages.

Behaviour follows asyncio's (3.11+) closely, because code in the wild
depends on it:

* The application's ``connection_made`` runs once the handshake is done (not
  at all for ``start_tls``, whose protocol is already connected); the waiter
  gets the handshake's error, and ``connection_lost`` is not called for a
  connection whose handshake never finished.
* A peer's close_notify, or a transport EOF without one, is ``eof_received``
  followed by a clean ``connection_lost(None)``; returning true from
  ``eof_received`` only logs a warning.
* SSL errors are ``OSError`` subclasses and so, as in asyncio, are logged only
  in debug mode; anything else that kills the connection goes to the loop's
  exception handler.
* Flow control composes through the layer both ways (see :mod:`.flow`): a
  transport that pauses us makes ciphertext wait here, which in time pauses
  the application; an application that pauses reading makes ciphertext wait
  undecrypted, which in time pauses the transport.
"""

from __future__ import annotations

import asyncio
import enum
import ssl
from asyncio.log import logger
from typing import Any

from ..transports.errors import report_fatal_error
from .flow import TLSFlowControl
from .pump import TLSPump, TLSState
from .transport import SSLTransport

__all__ = ["SSLTransport", "TLSLayer"]

SSL_HANDSHAKE_TIMEOUT = 60.0
SSL_SHUTDOWN_TIMEOUT = 30.0
# After this many writes to a closed connection, each further one logs a warning.
LOG_THRESHOLD_FOR_CONNLOST_WRITES = 5

_S = TLSState


class _AppState(enum.Enum):
    """The application protocol's life: INIT -> CONNECTED [-> EOF] -> LOST."""

    INIT = "INIT"
    CONNECTED = "CONNECTED"
    EOF = "EOF"
    LOST = "LOST"


def _check_timeout(name: str, value: float | None, default: float) -> float:
    if value is None:
        return default
    if value <= 0:
        raise ValueError(f"{name} should be a positive number, got {value}")
    return value


def _default_context(server_side: bool, server_hostname: str | None) -> ssl.SSLContext:
    # ``ssl=True``: a secure client default.  Looked up on the module at call
    # time, so code (and tests) that patch ssl.create_default_context see it.
    if server_side:
        raise ValueError("Server side SSL needs a valid SSLContext")
    context = ssl.create_default_context()
    if not server_hostname:
        context.check_hostname = False
    return context


class TLSLayer(TLSFlowControl, asyncio.BufferedProtocol):
    """The protocol that runs TLS for ``app_protocol`` over a byte transport.

    Install the result as a transport's protocol; its ``connection_made``
    starts the handshake.  ``waiter`` (if given) is resolved when the
    handshake completes, or fails with its error.  ``sslcontext=None`` (for
    ``ssl=True``) means a default client context.  Get the application's
    transport with :meth:`get_app_transport` right away.
    ``call_connection_made=False`` is for ``start_tls``, whose protocol is
    already connected.  Raises :class:`ValueError` for a non-positive timeout
    or what :meth:`ssl.SSLContext.wrap_bio` refuses.
    """

    #: Size of the buffer the transport receives ciphertext into.
    max_size = 256 * 1024

    _handshake_timer: asyncio.TimerHandle | None = None
    _shutdown_timer: asyncio.TimerHandle | None = None
    _handshake_started: float | None = None

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        app_protocol: asyncio.BaseProtocol,
        sslcontext: ssl.SSLContext | None,
        waiter: asyncio.Future[Any] | None,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
        call_connection_made: bool = True,
    ) -> None:
        self._handshake_timeout = _check_timeout(
            "ssl_handshake_timeout", ssl_handshake_timeout, SSL_HANDSHAKE_TIMEOUT
        )
        self._shutdown_timeout = _check_timeout(
            "ssl_shutdown_timeout", ssl_shutdown_timeout, SSL_SHUTDOWN_TIMEOUT
        )
        if not sslcontext:
            sslcontext = _default_context(server_side, server_hostname)
        self._loop = loop
        self._waiter = waiter
        self._pump = TLSPump(
            sslcontext,
            server_side=server_side,
            server_hostname=server_hostname if server_hostname and not server_side else None,
        )
        self._extra: dict[str, Any] = {"sslcontext": sslcontext}
        self._transport: asyncio.Transport | None = None
        self._app_state = _AppState.INIT if call_connection_made else _AppState.CONNECTED
        self._app_protocol: asyncio.BaseProtocol | None = None
        self._app_buffered = False
        self.set_app_protocol(app_protocol)
        self._app_transport: SSLTransport | None = SSLTransport(self)
        self._recv_view = memoryview(bytearray(self.max_size))
        # The error to report when the transport we aborted says it is lost
        # (abort() is public API; it cannot carry the reason).
        self._lost_exc: BaseException | None = None
        self._conn_lost = 0
        TLSFlowControl.__init__(self)

    def __repr__(self) -> str:
        return f"<TLSLayer {self._pump.state.value} transport={self._transport!r}>"

    # -- what the application side uses ------------------------------------------

    def get_app_transport(self) -> SSLTransport:
        """The transport the application protocol writes to."""
        transport = self._app_transport
        if transport is None:
            raise RuntimeError("the TLS connection is already lost")
        return transport

    def get_app_protocol(self) -> asyncio.BaseProtocol | None:
        """The application protocol (None once the connection is lost)."""
        return self._app_protocol

    def set_app_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Deliver data to ``protocol`` from now on."""
        self._app_protocol = protocol
        self._app_buffered = isinstance(protocol, asyncio.BufferedProtocol)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """TLS facts first, then the underlying transport's (socket, peername, ...)."""
        if name in self._extra:
            return self._extra[name]
        if self._transport is not None:
            return self._transport.get_extra_info(name, default)
        return default

    @property
    def state(self) -> TLSState:
        """The pump's state."""
        return self._pump.state

    # -- the transport's protocol interface ---------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """The byte transport is up: start the handshake."""
        self._transport = transport  # type: ignore[assignment]
        if self._loop.get_debug():
            logger.debug("%r starts SSL handshake", self)
            self._handshake_started = self._loop.time()
        self._handshake_timer = self._loop.call_later(
            self._handshake_timeout, self._check_handshake_timeout
        )
        self._handshake_step(self._pump.start_handshake)

    def connection_lost(self, exc: BaseException | None) -> None:
        """The byte transport is gone: tell the application (if it was connected)."""
        if exc is None:
            exc = self._lost_exc
        self._lost_exc = None
        self._conn_lost += 1
        interrupted_handshake = self._pump.state is _S.DO_HANDSHAKE
        self._pump.abort()
        if self._app_transport is not None:
            self._app_transport._closed = True
        app = self._app_protocol
        if not interrupted_handshake and app is not None and self._app_state in (
            _AppState.CONNECTED,
            _AppState.EOF,
        ):
            self._app_state = _AppState.LOST
            self._loop.call_soon(app.connection_lost, exc)  # type: ignore[arg-type]
        # Drop the references that would make cycles (the app transport
        # points back at us) and keep the context alive after the end.
        self._transport = None
        self._app_transport = None
        self._app_protocol = None
        self._wake_waiter(exc)
        self._cancel_timers()

    def get_buffer(self, sizehint: int) -> memoryview:
        """Where the transport should put the ciphertext it receives."""
        return self._recv_view

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` of ciphertext arrived in the buffer from :meth:`get_buffer`."""
        self._receive(self._recv_view[:nbytes])

    def data_received(self, data: bytes) -> None:
        """Ciphertext from a transport that does not use :meth:`get_buffer`."""
        self._receive(data)

    def eof_received(self) -> bool | None:
        """The peer closed its side of the byte stream (maybe without close_notify)."""
        if self._loop.get_debug():
            logger.debug("%r received EOF", self)
        pump = self._pump
        state = pump.state
        try:
            if state is _S.DO_HANDSHAKE:
                self._handshake_step(pump.receive_eof)
            elif state is _S.WRAPPED:
                pump.receive_eof()
                if self._app_reading_paused:
                    # Finish once the application reads what is left.
                    return True
                self._do_flush()
            elif state is _S.FLUSHING:
                pump.receive_eof()
                self._do_flush()
            elif state is _S.SHUTDOWN:
                self._shutdown_step(pump.receive_eof)
        except Exception:
            if self._transport is not None:
                self._transport.close()
            raise
        return None

    # -- incoming -------------------------------------------------------------------

    def _receive(self, data: bytes | memoryview) -> None:
        pump = self._pump
        state = pump.state
        if state is _S.WRAPPED:
            try:
                pump.receive_ciphertext(data)
            except Exception as exc:
                self._fatal_error(exc, "Fatal error on SSL protocol")
                return
            self._do_read()
        elif state is _S.DO_HANDSHAKE:
            self._handshake_step(pump.receive_ciphertext, data)
        elif state is _S.SHUTDOWN:
            self._shutdown_step(pump.receive_ciphertext, data)
        elif state is _S.FLUSHING:
            try:
                pump.receive_ciphertext(data)
            except Exception as exc:
                self._fatal_error(exc, "Fatal error on SSL protocol")
                return
            self._do_flush()
        else:
            pump.receive_ciphertext(data)

    def _do_read(self) -> None:
        # Decrypt what is there for the application (unless it paused), send
        # whatever reading produced (TLS 1.3 key updates, renegotiation), and
        # pause the transport if undecrypted input piles up.
        if self._pump.state not in (_S.WRAPPED, _S.FLUSHING):
            return
        try:
            if not self._app_reading_paused:
                if self._app_buffered:
                    self._read_into_app()
                else:
                    self._read_to_app()
                self._flush_outgoing()
            self._control_transport_reading()
        except Exception as exc:
            self._fatal_error(exc, "Fatal error on SSL protocol")

    def _read_to_app(self) -> None:
        pump = self._pump
        while True:
            data = pump.read_plaintext(self.max_size)
            if not data:
                break
            self._app_protocol.data_received(data)  # type: ignore[union-attr]
            if self._app_reading_paused:
                break
        if pump.close_notify_received:
            self._on_close_notify()

    def _read_into_app(self) -> None:
        pump = self._pump
        protocol: asyncio.BufferedProtocol = self._app_protocol  # type: ignore[assignment]
        buffer = protocol.get_buffer(pump.pending_incoming)
        wanted = memoryview(buffer).nbytes
        if not wanted:
            raise RuntimeError("get_buffer() returned an empty buffer")
        count = pump.read_plaintext_into(buffer)
        if count:
            protocol.buffer_updated(count)
        if count == wanted:
            # The buffer is full and more may be waiting; let other callbacks
            # run before filling the next one.
            self._loop.call_soon(self._do_read)
        else:
            pump.check_failure()
        if pump.close_notify_received:
            self._on_close_notify()

    def _on_close_notify(self) -> None:
        self._call_eof_received()
        self.start_shutdown()

    def _call_eof_received(self) -> None:
        if self._app_state is not _AppState.CONNECTED:
            return
        self._app_state = _AppState.EOF
        try:
            keep_open = self._app_protocol.eof_received()  # type: ignore[union-attr]
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Error calling eof_received()")
            return
        if keep_open:
            logger.warning("returning true from eof_received() has no effect when using ssl")

    # -- handshake --------------------------------------------------------------------

    def _handshake_step(self, step: Any, *args: Any) -> None:
        try:
            step(*args)
        except Exception as exc:
            self._on_handshake_failed(exc)
            return
        if self._pump.state is _S.WRAPPED:
            self._on_handshake_done()
        else:
            self._flush_outgoing()

    def _on_handshake_done(self) -> None:
        self._cancel_handshake_timer()
        info = self._pump.handshake
        assert info is not None
        if self._handshake_started is not None and self._loop.get_debug():
            elapsed = self._loop.time() - self._handshake_started
            logger.debug("%r: SSL handshake took %.1f ms", self, elapsed * 1e3)
        self._extra.update(
            peercert=info.peercert,
            cipher=info.cipher,
            compression=info.compression,
            ssl_object=info.ssl_object,
        )
        # The last flight (a client's Finished) goes out before anything else.
        self._flush_outgoing()
        if self._app_state is _AppState.INIT:
            self._app_state = _AppState.CONNECTED
            self._app_protocol.connection_made(self._app_transport)  # type: ignore[union-attr, arg-type]
        self._wake_waiter(None)
        self._do_read()

    def _on_handshake_failed(self, exc: BaseException) -> None:
        self._cancel_handshake_timer()
        # Send the alert that says why (the peer's error is then
        # "unknown ca" rather than a bare reset), then abort.
        self._flush_outgoing()
        if isinstance(exc, ssl.CertificateError):
            message = "SSL handshake failed on verifying the certificate"
        else:
            message = "SSL handshake failed"
        self._fatal_error(exc, message)
        self._wake_waiter(exc)

    def _check_handshake_timeout(self) -> None:
        self._handshake_timer = None
        if self._pump.state is _S.DO_HANDSHAKE:
            self._fatal_error(
                ConnectionAbortedError(
                    f"SSL handshake is taking longer than {self._handshake_timeout} "
                    f"seconds: aborting the connection"
                )
            )

    # -- shutdown ---------------------------------------------------------------------

    def start_shutdown(self) -> None:
        """The application closed its transport: flush, send close_notify, then close."""
        state = self._pump.state
        if state is not _S.WRAPPED and state is not _S.DO_HANDSHAKE:
            return
        if self._app_transport is not None:
            self._app_transport._closed = True
        if state is _S.DO_HANDSHAKE:
            self.abort(None)
            return
        self._pump.start_shutdown()
        self._shutdown_timer = self._loop.call_later(
            self._shutdown_timeout, self._check_shutdown_timeout
        )
        self._do_flush()

    def _do_flush(self) -> None:
        # Deliver what already arrived, then close_notify.
        self._do_read()
        if self._pump.state is _S.FLUSHING:
            self._shutdown_step(self._pump.send_close_notify)

    def _shutdown_step(self, step: Any, *args: Any) -> None:
        try:
            step(*args)
        except Exception as exc:
            self._on_shutdown_complete(exc)
            return
        self._flush_outgoing()
        if self._pump.state is _S.CLOSED:
            self._call_eof_received()
            self._on_shutdown_complete(None)

    def _on_shutdown_complete(self, exc: BaseException | None) -> None:
        if self._shutdown_timer is not None:
            self._shutdown_timer.cancel()
            self._shutdown_timer = None
        if exc is not None:
            self._fatal_error(exc)
        elif self._transport is not None:
            self._loop.call_soon(self._transport.close)

    def _check_shutdown_timeout(self) -> None:
        self._shutdown_timer = None
        if self._pump.state in (_S.FLUSHING, _S.SHUTDOWN):
            self.abort(TimeoutError("SSL shutdown timed out"))

    def abort(self, exc: BaseException | None) -> None:
        """Drop the connection now; ``connection_lost`` will get ``exc``."""
        self._pump.abort()
        transport = self._transport
        if transport is not None:
            if self._lost_exc is None:
                self._lost_exc = exc
            transport.abort()

    # -- outgoing ---------------------------------------------------------------------

    def write_app_data(self, chunks: Any) -> None:
        """Encrypt and send what the application wrote (an iterable of bytes-likes)."""
        state = self._pump.state
        if state is not _S.WRAPPED and state is not _S.DO_HANDSHAKE:
            if self._conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("SSL connection is closed")
            self._conn_lost += 1
            return
        send = self._pump.send_plaintext
        try:
            for data in chunks:
                send(data)
            if state is _S.WRAPPED:
                self._flush_outgoing()
        except Exception as exc:
            self._fatal_error(exc, "Fatal error on SSL protocol")

    def _flush_outgoing(self) -> None:
        transport = self._transport
        if not self._transport_paused_us and transport is not None:
            data = self._pump.ciphertext_to_send()
            if data:
                transport.write(data)
        self._control_app_writing()

    # -- failure ------------------------------------------------------------------------

    def _fatal_error(self, exc: BaseException, message: str = "Fatal error on transport") -> None:
        transport = self._transport
        if transport is not None:
            if self._lost_exc is None:
                self._lost_exc = exc
            transport.abort()
        if not isinstance(exc, asyncio.CancelledError):
            report_fatal_error(
                self._loop, message, exc, transport, self, isinstance(exc, OSError)
            )

    def _wake_waiter(self, exc: BaseException | None) -> None:
        waiter = self._waiter
        if waiter is None:
            return
        self._waiter = None
        if not waiter.cancelled():
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)

    def _cancel_handshake_timer(self) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None

    def _cancel_timers(self) -> None:
        self._cancel_handshake_timer()
        if self._shutdown_timer is not None:
            self._shutdown_timer.cancel()
            self._shutdown_timer = None
