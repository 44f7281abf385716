"""A sans-I/O TLS connection: ciphertext and plaintext in, ciphertext and plaintext out.

:class:`TLSPump` wraps the stdlib's :class:`ssl.SSLObject` between two
:class:`ssl.MemoryBIO` objects.  It has no socket, no event loop and no clock:
the caller feeds it what arrived (:meth:`~TLSPump.receive_ciphertext`,
:meth:`~TLSPump.receive_eof`), what the application wants to send
(:meth:`~TLSPump.send_plaintext`) and what it decided
(:meth:`~TLSPump.start_handshake`, :meth:`~TLSPump.start_shutdown`), and takes
out the records to put on the wire (:meth:`~TLSPump.ciphertext_to_send`) and
the application data that was decrypted (:meth:`~TLSPump.read_plaintext`).
Everything that needs a clock or a socket (timeouts, flow control, when to
read) is the caller's business; :mod:`slipstream.tls.layer` is the caller that
makes this an asyncio protocol.

The connection's life is a small state machine whose edges are the table
:data:`TRANSITIONS`, not ``if`` chains spread over the methods::

    UNWRAPPED -> DO_HANDSHAKE -> WRAPPED -> FLUSHING -> SHUTDOWN -> CLOSED

``FLUSHING`` is "closing has begun, no new application data may be sent, but
what is in flight may still be read"; ``SHUTDOWN`` is "our close_notify is
out, waiting for the peer's".  A failure or an abort leads from anywhere to
``CLOSED``.

Errors are the ``ssl`` module's own exceptions, raised from the input that
revealed them (a bad certificate from :meth:`receive_ciphertext` during the
handshake, a bad record MAC from :meth:`read_plaintext`), after the pump has
moved to ``CLOSED``.  The one error that is not an ``ssl`` one is the peer
hanging up mid-handshake: :class:`ConnectionResetError`, as asyncio reports it.
"""

from __future__ import annotations

import collections
import enum
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["TRANSITIONS", "HandshakeInfo", "TLSEvent", "TLSPump", "TLSState", "TLSStateError"]

# An SSLObject says "I need more ciphertext before I can go on" with
# SSLWantReadError.  asyncio (after uvloop) treats SSLSyscallError the same way:
# over memory BIOs no system call is involved, and OpenSSL reports some states
# with an empty error queue as SSL_ERROR_SYSCALL; retrying once more data has
# arrived is the right answer there too.
_AGAIN = (ssl.SSLWantReadError, ssl.SSLSyscallError)

# What one read_plaintext() call returns at most, unless told otherwise.
DEFAULT_READ_LIMIT = 256 * 1024


class TLSState(enum.Enum):
    """Where a TLS connection is in its life."""

    UNWRAPPED = "UNWRAPPED"  #: nothing has been said yet
    DO_HANDSHAKE = "DO_HANDSHAKE"  #: the handshake is under way
    WRAPPED = "WRAPPED"  #: application data flows both ways
    FLUSHING = "FLUSHING"  #: closing: no new data may be sent, what arrived may be read
    SHUTDOWN = "SHUTDOWN"  #: close_notify sent (or not sendable), waiting for the peer's
    CLOSED = "CLOSED"  #: done, cleanly or not


class TLSEvent(enum.Enum):
    """What moves a connection from one :class:`TLSState` to another."""

    START_HANDSHAKE = "start the handshake"
    HANDSHAKE_DONE = "finish the handshake"
    CLOSE = "start the shutdown"
    EOF = "receive EOF"
    CLOSE_NOTIFY_SENT = "send close_notify"
    SHUTDOWN_DONE = "finish the shutdown"
    FAIL = "fail"
    ABORT = "abort"


_S = TLSState
_E = TLSEvent

#: ``(state, event) -> next state``.  A pair that is absent is a caller's
#: mistake and raises :class:`TLSStateError`.
TRANSITIONS: Mapping[tuple[TLSState, TLSEvent], TLSState] = {
    (_S.UNWRAPPED, _E.START_HANDSHAKE): _S.DO_HANDSHAKE,
    (_S.UNWRAPPED, _E.CLOSE): _S.CLOSED,
    (_S.UNWRAPPED, _E.EOF): _S.CLOSED,
    (_S.DO_HANDSHAKE, _E.HANDSHAKE_DONE): _S.WRAPPED,
    # Closing mid-handshake abandons it: there is no session to close cleanly.
    (_S.DO_HANDSHAKE, _E.CLOSE): _S.CLOSED,
    (_S.WRAPPED, _E.CLOSE): _S.FLUSHING,
    # A transport EOF without close_notify (a "ragged" EOF) ends the session
    # like a close_notify would: asyncio does not treat it as an error, since
    # most HTTPS servers hang up that way.
    (_S.WRAPPED, _E.EOF): _S.FLUSHING,
    (_S.FLUSHING, _E.CLOSE): _S.FLUSHING,
    (_S.FLUSHING, _E.EOF): _S.FLUSHING,
    (_S.FLUSHING, _E.CLOSE_NOTIFY_SENT): _S.SHUTDOWN,
    (_S.SHUTDOWN, _E.CLOSE): _S.SHUTDOWN,
    # Nobody is left to answer our close_notify.
    (_S.SHUTDOWN, _E.EOF): _S.CLOSED,
    (_S.SHUTDOWN, _E.SHUTDOWN_DONE): _S.CLOSED,
    (_S.CLOSED, _E.CLOSE): _S.CLOSED,
    (_S.CLOSED, _E.EOF): _S.CLOSED,
    **{(state, _E.FAIL): _S.CLOSED for state in _S},
    **{(state, _E.ABORT): _S.CLOSED for state in _S},
}

# States in which decrypted application data may still be taken out.
_READABLE = frozenset({_S.WRAPPED, _S.FLUSHING})
# States in which the application may hand over data to send (before the
# handshake it waits in the backlog).
_WRITABLE = frozenset({_S.UNWRAPPED, _S.DO_HANDSHAKE, _S.WRAPPED})


class TLSStateError(RuntimeError):
    """An input that the connection's current state does not allow."""


@dataclass(frozen=True)
class HandshakeInfo:
    """What the handshake established (asyncio's ``get_extra_info`` keys)."""

    ssl_object: ssl.SSLObject
    peercert: dict[str, Any] | None
    cipher: tuple[str, str, int] | None
    compression: str | None


class TLSPump:
    """One TLS connection over memory buffers (see the module docstring).

    ``context`` is an :class:`ssl.SSLContext`; ``server_hostname`` (clients
    only) is what the certificate is checked against and what SNI sends.
    Creating the pump raises what :meth:`ssl.SSLContext.wrap_bio` raises, e.g.
    :class:`ValueError` when the context checks host names and none is given.
    """

    def __init__(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
    ) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        #: The :class:`ssl.SSLObject` doing the work.
        self.ssl_object = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, server_hostname=server_hostname
        )
        #: The current :class:`TLSState`.
        self.state = TLSState.UNWRAPPED
        #: Set when the handshake succeeds.
        self.handshake: HandshakeInfo | None = None
        #: The transport said the peer will send nothing more.
        self.eof_received = False
        #: The peer's close_notify was read: its side of the session is over.
        self.close_notify_received = False
        # Plaintext the SSLObject could not take yet (before the handshake, or
        # while a renegotiation waits for the peer); sent in order later.
        self._backlog: collections.deque[bytes] = collections.deque()
        self._backlog_size = 0
        # Reads know when to stop without asking OpenSSL for the read that
        # would fail (an SSLWantReadError costs more than the record it
        # guards): once the incoming BIO is empty and the SSLObject holds no
        # decrypted bytes, no further record can be complete.  That holds
        # because Python never turns on OpenSSL's read-ahead, so OpenSSL only
        # ever takes from the BIO the record it is working on.  Until more
        # ciphertext arrives, a read then answers "nothing" at once.
        self._want_read = False
        # An error met by a read that still returned data, raised by the next
        # read.  Stored without its traceback, so it holds no frame (and no
        # cycle back to this pump).
        self._deferred_error: BaseException | None = None

    def __repr__(self) -> str:
        side = "server" if self.ssl_object.server_side else "client"
        return f"<TLSPump {side} {self.state.value}>"

    # -- the state machine ------------------------------------------------------

    def _advance(self, event: TLSEvent) -> None:
        try:
            self.state = TRANSITIONS[(self.state, event)]
        except KeyError:
            raise TLSStateError(f"cannot {event.value} in state {self.state.value}") from None

    def _fail(self) -> None:
        self._advance(TLSEvent.FAIL)
        self._backlog.clear()
        self._backlog_size = 0

    # -- inputs -------------------------------------------------------------------

    def start_handshake(self) -> None:
        """Begin the handshake (a client's hello is then in :meth:`ciphertext_to_send`)."""
        self._advance(TLSEvent.START_HANDSHAKE)
        self._step_handshake()

    def receive_ciphertext(self, data: bytes | bytearray | memoryview) -> None:
        """Take bytes that arrived from the peer, and advance the handshake or shutdown.

        Raises the handshake's or the shutdown's error, if these bytes reveal
        one.  During the session proper, decrypted data waits for
        :meth:`read_plaintext`; bytes arriving after ``CLOSED`` are dropped.
        """
        state = self.state
        if state is _S.CLOSED:
            return
        self._incoming.write(data)
        self._want_read = False
        if state is _S.DO_HANDSHAKE:
            self._step_handshake()
        elif state is _S.SHUTDOWN:
            self._step_shutdown()
        elif self._backlog and state in _READABLE:
            # A renegotiation that blocked a write may have progressed.
            self._write_backlog()

    def receive_eof(self) -> None:
        """The transport will deliver nothing more from the peer.

        Mid-handshake that is a failure (:class:`ConnectionResetError`, as
        asyncio raises); afterwards the session just ends: plaintext already
        received can still be read, then :meth:`send_close_notify` finishes.
        """
        self.eof_received = True
        if self.state is _S.DO_HANDSHAKE:
            self._fail()
            raise ConnectionResetError
        self._advance(TLSEvent.EOF)

    def send_plaintext(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt application data (kept for later if the session cannot take it yet).

        Raises :class:`TLSStateError` once the connection is closing.
        """
        state = self.state
        if state is _S.WRAPPED and not self._backlog:
            try:
                sent = self.ssl_object.write(data)
            except _AGAIN:
                sent = 0
            except Exception:
                self._fail()
                raise
            if sent >= len(data):
                return
            data = data[sent:]
        elif state not in _WRITABLE:
            raise TLSStateError(f"cannot send application data in state {state.value}")
        if data:
            # Copied: the caller may reuse a bytearray once we return.
            self._backlog.append(bytes(data))
            self._backlog_size += len(data)

    def start_shutdown(self) -> None:
        """The application is done: stop accepting data to send (``WRAPPED -> FLUSHING``).

        Before the session is up this abandons the handshake (``-> CLOSED``).
        The caller then reads what is left and calls :meth:`send_close_notify`.
        """
        self._advance(TLSEvent.CLOSE)

    def send_close_notify(self) -> None:
        """End ``FLUSHING``: send what is left, then close_notify (``-> SHUTDOWN``).

        The pump reaches ``CLOSED`` when the peer's close_notify arrives,
        or at once if it already has, or if the transport hit EOF (then, as
        asyncio does, nothing is sent: the peer has gone).
        """
        if self._backlog:
            self._write_backlog()
        self._advance(TLSEvent.CLOSE_NOTIFY_SENT)
        self._backlog.clear()
        self._backlog_size = 0
        self._step_shutdown()

    def abort(self) -> None:
        """Give up the connection at once (``-> CLOSED``); nothing more will be sent."""
        self._advance(TLSEvent.ABORT)
        self._backlog.clear()
        self._backlog_size = 0
        self._deferred_error = None
        self._outgoing.read()

    # -- outputs ------------------------------------------------------------------

    def ciphertext_to_send(self) -> bytes:
        """Take the records that should now go to the peer (``b''`` if none)."""
        return self._outgoing.read()

    def read_plaintext(self, limit: int = DEFAULT_READ_LIMIT) -> bytes:
        """Take up to ``limit`` bytes of decrypted application data.

        ``b''`` means none is available now; after the peer's close_notify
        (then :attr:`close_notify_received` is set) it means none ever will
        be.  A decryption error is raised, or, if data was decrypted before it,
        that data is returned and the error is raised by the next read.
        """
        if self._deferred_error is not None:
            self._raise_deferred()
        if self._want_read or self.close_notify_received or self.state not in _READABLE:
            return b""
        read = self.ssl_object.read
        decrypted_pending = self.ssl_object.pending
        incoming = self._incoming
        chunks: list[bytes] = []
        total = 0
        try:
            while total < limit:
                chunk = read(limit - total)
                if not chunk:
                    self.close_notify_received = True
                    break
                chunks.append(chunk)
                total += len(chunk)
                if not incoming.pending and not decrypted_pending():
                    # Nothing left to decrypt: skip the read that would only
                    # raise SSLWantReadError (see __init__).
                    self._want_read = True
                    break
        except _AGAIN:
            self._want_read = True
        except Exception as exc:
            self._fail()
            if not chunks:
                raise
            self._deferred_error = exc.with_traceback(None)
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)

    def read_plaintext_into(self, buffer: Any) -> int:
        """Like :meth:`read_plaintext`, into a writable buffer; returns how many bytes."""
        if self._deferred_error is not None:
            self._raise_deferred()
        if self._want_read or self.close_notify_received or self.state not in _READABLE:
            return 0
        view = memoryview(buffer)
        wanted = view.nbytes
        read = self.ssl_object.read
        decrypted_pending = self.ssl_object.pending
        incoming = self._incoming
        done = 0
        try:
            while done < wanted:
                # Slicing the memoryview, never the buffer: a bytearray slice
                # would be a copy, and the data would land in it.
                count: int = read(wanted - done, view[done:])  # type: ignore[assignment]
                if not count:
                    self.close_notify_received = True
                    break
                done += count
                if not incoming.pending and not decrypted_pending():
                    self._want_read = True
                    break
        except _AGAIN:
            self._want_read = True
        except Exception as exc:
            self._fail()
            if not done:
                raise
            self._deferred_error = exc.with_traceback(None)
        return done

    def check_failure(self) -> None:
        """Raise the error that cut short a read which still returned data, if any."""
        if self._deferred_error is not None:
            self._raise_deferred()

    @property
    def pending_ciphertext(self) -> int:
        """Bytes of records waiting for :meth:`ciphertext_to_send`."""
        return self._outgoing.pending

    @property
    def pending_plaintext(self) -> int:
        """Bytes of application data not encrypted yet (the backlog)."""
        return self._backlog_size

    @property
    def pending_incoming(self) -> int:
        """Bytes received that the SSLObject has not consumed yet."""
        return self._incoming.pending

    # -- internals ------------------------------------------------------------------

    def _raise_deferred(self) -> None:
        exc, self._deferred_error = self._deferred_error, None
        assert exc is not None
        raise exc

    def _step_handshake(self) -> None:
        sslobj = self.ssl_object
        try:
            sslobj.do_handshake()
        except _AGAIN:
            return
        except Exception:
            self._fail()
            raise
        try:
            info = HandshakeInfo(
                ssl_object=sslobj,
                peercert=sslobj.getpeercert(),
                cipher=sslobj.cipher(),
                compression=sslobj.compression(),
            )
        except Exception:
            self._fail()
            raise
        self.handshake = info
        self._advance(TLSEvent.HANDSHAKE_DONE)
        if self._backlog:
            self._write_backlog()

    def _step_shutdown(self) -> None:
        if self.eof_received:
            self._advance(TLSEvent.SHUTDOWN_DONE)
            return
        try:
            self._discard_incoming()
            self.ssl_object.unwrap()
        except _AGAIN:
            return
        except Exception:
            self._fail()
            raise
        self.close_notify_received = True
        self._advance(TLSEvent.SHUTDOWN_DONE)

    def _discard_incoming(self) -> None:
        # The peer may still be sending when our close_notify goes out (it
        # has not seen it yet).  TLS says a closing side ignores that data;
        # OpenSSL's SSL_shutdown instead fails on it ("application data
        # after close notify").  So read it first, and drop it: the
        # application said it wants nothing more.
        read = self.ssl_object.read
        try:
            while read(DEFAULT_READ_LIMIT):
                pass
        except _AGAIN:
            pass
        except ssl.SSLZeroReturnError:
            # The peer's close_notify, once ours is sent; unwrap() completes.
            pass

    def _write_backlog(self) -> None:
        backlog = self._backlog
        write = self.ssl_object.write
        while backlog:
            data = backlog[0]
            try:
                sent = write(data)
            except _AGAIN:
                return
            except Exception:
                self._fail()
                raise
            self._backlog_size -= sent
            if sent < len(data):
                backlog[0] = data[sent:]
            else:
                backlog.popleft()
