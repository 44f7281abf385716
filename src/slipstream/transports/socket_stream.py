"""The TCP / Unix stream socket transport: the whole :class:`asyncio.Transport` API.

How bytes move is :mod:`.stream_engine`'s business: the transport here is the
:class:`asyncio.Transport` that protocols see, and it hands every call that
moves bytes to its :class:`~.stream_engine.StreamEngine` (compiled where
``pip install`` had a C compiler).  ``transport.write`` is the engine's own
``write``, held in a slot of the transport, so a write costs no forwarding frame; the
loop's readiness handles call the engine directly.  What stays here is what
asyncio's transport API adds around the bytes: the extra info, the repr, the
unclosed-transport warning, the server's bookkeeping and the hand-over of
the socket to ``loop.sendfile()``.

The transport claims its descriptor on the loop (``claim_fd``), so a user's
``add_reader`` on it raises ``RuntimeError`` while the transport is open, exactly
like asyncio's "File descriptor ... is used by transport".

What an idle connection costs
-----------------------------

A server may hold tens of thousands of connections that do nothing, so what a
transport keeps while idle is measured (the ``scale`` benchmark row), not
guessed.  Three things used to dominate, and none is needed until used:

* **The write buffer.**  An empty ``collections.deque`` is ~600 bytes (it
  preallocates a block of 64 slots), more than the rest of the transport.
  Most writes go straight to the kernel, so the deque is made only when a
  write has to wait, and dropped again once the buffer drains; in between
  the engine's ``buffer`` is an empty tuple, which every "is anything
  buffered?" test treats the same.
* **The extra info.**  asyncio fills a dict with ``socket``, ``sockname`` and
  ``peername`` up front: a dict, a ``TransportSocket``, an address tuple, and
  a ``getsockname()`` system call per connection.  Here the peer's address is
  kept as ``accept()`` returned it (or asked for at once, for a connection we
  made: a reset peer could no longer say), the local address is asked for on
  the first ``get_extra_info("sockname")`` -- or at the latest just before the
  socket is closed, so the answer after a close is the same as asyncio's --
  and the ``TransportSocket`` is made on first request and kept, so it is the
  same object every time.
* **The server's bookkeeping** (see ``net/server.py``): a map from the
  descriptor to a plain weak reference -- Python keeps one per object, so it
  is the same one the loop's ``claim_fd`` holds -- instead of a ``WeakSet``
  entry with a weak reference and callback of its own.

An accepted connection is also cheaper to start: no ``getsockname()`` (above),
and no ``TCP_NODELAY`` call when the listening socket passed the option on.
"""

from __future__ import annotations

import asyncio
import socket
import warnings
from asyncio.constants import _SendfileMode as SendfileMode
from asyncio.trsock import TransportSocket
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from .allocator import LARGE_READ, SMALL_READ, large_reads_are_cheap
from .flow import compute_water_marks
from .stream_engine import StreamEngine

if TYPE_CHECKING:
    from ..core import CoreLoop

__all__ = ["ConnectionTracker", "SocketTransport", "is_tcp_stream", "set_nodelay"]

_TCP_FAMILIES = frozenset({socket.AF_INET, socket.AF_INET6})



# "Not known yet": the local address before anyone asked for it.
_UNKNOWN: Any = object()


class ConnectionTracker(Protocol):
    """What a transport accepted by a server reports to it (``Server`` implements it).

    ``fd`` is the transport's descriptor number: a key that stays valid for
    the transport's whole life, even in ``__del__``.
    """

    def _attach(self, fd: int, transport: asyncio.BaseTransport) -> None: ...

    def _detach(self, fd: int, transport: asyncio.BaseTransport) -> None: ...


def is_tcp_stream(sock: socket.socket) -> bool:
    """Whether ``sock`` is a TCP (IPv4 or IPv6) stream socket."""
    return sock.family in _TCP_FAMILIES and sock.type == socket.SOCK_STREAM


def set_nodelay(sock: socket.socket) -> bool:
    """Disable Nagle's algorithm on a TCP socket; False if not TCP or the kernel refused.

    asyncio does this only when ``sock.proto`` says TCP, which leaves out the
    sockets a server accepts (Python reports proto 0 for those), so a server's
    small replies can sit out a delayed ACK.  We disable it on every TCP stream
    socket, as uvloop does.
    """
    if not is_tcp_stream(sock):
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        # E.g. EINVAL on a socket whose connection was already reset.
        return False
    return True


class SocketTransport(asyncio.Transport):
    """A connected stream socket (TCP or Unix) driving a Protocol or BufferedProtocol."""

    # How much one recv() asks for.  recv(n) allocates n bytes before it
    # knows how many will come, then shrinks the block to what came, so a
    # large n is only as cheap as the C allocator makes it (allocator.py has
    # the whole story).  Where large_reads_are_cheap() -- glibc, taught once
    # per process -- every read asks for 256 KiB, as asyncio's do: a 1 KiB
    # message costs the same as with 64 KiB reads, and a 100 KiB one needs
    # one read instead of two.  Elsewhere reads start at 64 KiB and go up to
    # 127 KiB (max_size) while the peer keeps filling them, staying under
    # the 128 KiB above which glibc, untaught, would mmap every read (which
    # once cost our 100 KiB echo 77 µs per round trip instead of 34, and
    # costs asyncio's 1 KiB echo ~27 µs instead of ~9 in a new process).
    max_size = 127 * 1024

    # Read by asyncio-compatible helpers (start_tls, sendfile) to know what the
    # transport supports.
    _start_tls_compatible = True
    _sendfile_compatible = SendfileMode.TRY_NATIVE

    # write is a slot, filled with the engine's own method in __init__: so
    # ``transport.write(data)`` is a slot load, which CPython specialises to
    # a few instructions (an instance attribute shadowing the method that
    # asyncio.WriteTransport defines is not specialised and cost ~400
    # instructions per call), then one call of the engine's method -- C, on
    # a compiled build -- with no frame of ours in between.  is_closing is
    # one too, for asyncio's StreamWriter.drain(), which asks it on every
    # drain: as a method of ours it ran a frame, then read the engine's flag
    # through the engine type's descriptor, which CPython does not
    # specialise (~480 instructions of a 27,800-instruction streams round
    # trip).  (writelines, rarer, is an ordinary method: each bound method
    # kept costs a connection, idle or not, ~80 bytes.)
    __slots__ = ("__dict__", "__weakref__", "is_closing", "write")
    # (mypy has no word for "a slot holding a callable overrides a method".)
    write: Callable[[bytes | bytearray | memoryview[Any]], None]  # type: ignore[assignment]
    is_closing: Callable[[], bool]

    _loop: CoreLoop
    _engine: StreamEngine  # (no class default: a shadowed attribute is a slow load)
    _server: ConnectionTracker | None = None

    def __init__(
        self,
        loop: CoreLoop,
        sock: socket.socket,
        protocol: asyncio.BaseProtocol,
        waiter: asyncio.Future[None] | None = None,
        extra: dict[str, Any] | None = None,
        server: ConnectionTracker | None = None,
        *,
        peername: Any = _UNKNOWN,
        nodelay: bool = True,
    ) -> None:
        """Start driving ``sock`` (connected, non-blocking) for ``protocol``.

        ``peername`` is the peer's address if the caller knows it (a server
        has it from ``accept()``); ``extra`` may also give it, as asyncio's
        transports accept.  ``nodelay=False`` says the caller already took
        care of ``TCP_NODELAY`` (the server's accept loop does).
        """
        # Only what the caller gave beyond the socket's own information is
        # kept as a dict; socket, sockname and peername are get_extra_info's.
        self._extra = extra or None
        if extra is not None and "peername" in extra:
            peername = extra["peername"]
        elif peername is _UNKNOWN:
            try:
                peername = sock.getpeername()
            except OSError:
                peername = None
        self._peername = peername
        self._sockname = _UNKNOWN
        self._trsock: TransportSocket | None = None
        self._loop = loop
        self._sock = sock
        if large_reads_are_cheap():
            read_sizes = (LARGE_READ, LARGE_READ)
        else:
            read_sizes = (SMALL_READ, self.max_size)
        self._engine = engine = StreamEngine(loop, sock, self, self._socket_closed, read_sizes)
        self.write = engine.write
        self.is_closing = engine.is_closing
        engine.set_protocol(protocol)
        self._server = server
        fd = engine.fd
        if server is not None:
            server._attach(fd, self)
        if nodelay:
            set_nodelay(sock)
        loop.claim_fd(fd, self)
        loop.call_soon(protocol.connection_made, self)
        # Reading starts only after connection_made() ran, and the creator's
        # waiter wakes after that too.  (Watching at once would save a
        # callback per connection, but then the first data_received() could
        # run before the callbacks connection_made() scheduled -- the first
        # step of a task it started, say -- which asyncio never does.)
        loop.call_soon(engine.start, waiter)

    def _socket_closed(self) -> None:
        # The engine's on_closed: connection_lost() has run.
        if self._sockname is _UNKNOWN:
            # Last chance: asyncio answers it after the close too.
            self._sockname = self._ask_sockname()
        self._sock.close()
        server = self._server
        if server is not None:
            self._server = None
            server._detach(self._engine.fd, self)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``socket``, ``sockname``, ``peername`` and what the creator gave, as asyncio's."""
        if name == "peername":
            return self._peername
        if name == "sockname":
            sockname = self._sockname
            if sockname is _UNKNOWN:
                sockname = self._sockname = self._ask_sockname()
            return sockname
        if name == "socket":
            trsock = self._trsock
            if trsock is None:
                trsock = self._trsock = TransportSocket(self._sock)
            return trsock
        extra = self._extra
        return default if extra is None else extra.get(name, default)

    def _ask_sockname(self) -> Any:
        try:
            return self._sock.getsockname()
        except OSError:
            return None

    def __repr__(self) -> str:
        info = [type(self).__name__]
        engine = self._engine
        if engine.sock_closed:
            info.append("closed")
        elif engine.closing:
            info.append("closing")
        info.append(f"fd={engine.fd}")
        if not engine.sock_closed and not self._loop.is_closed():
            info.append("read=polling" if engine.reading else "read=idle")
            state = "polling" if engine.buffer else "idle"
            info.append(f"write=<{state}, bufsize={engine.buffer_size}>")
        return "<{}>".format(" ".join(info))

    def __del__(self, _warn: Any = warnings.warn) -> None:
        # (No engine if __init__ failed before making one.)
        engine: StreamEngine | None = self.__dict__.get("_engine")
        if engine is not None and not engine.sock_closed:
            message = f"unclosed transport {self!r}"
            engine.sock_closed = True
            self._sock.close()
            if self._server is not None:
                self._server._detach(engine.fd, self)
                self._server = None
            # Last: with warnings turned into errors this raises, and the
            # server must have heard of the end all the same (it holds its
            # clients by descriptor number, which nothing else would clear).
            _warn(message, ResourceWarning, source=self)

    # -- the engine's, as asyncio's transport API -------------------------------------

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview[Any]]) -> None:
        """Write every buffer of ``list_of_data``, as one ``write`` of their concatenation."""
        self._engine.writelines(list_of_data)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Switch protocols (a Protocol and a BufferedProtocol are both fine)."""
        self._engine.set_protocol(protocol)

    def get_protocol(self) -> Any:
        return self._engine.protocol

    @property
    def _protocol(self) -> Any:
        # Named as in asyncio's own transports, where some code looks for it.
        return self._engine.protocol

    @property
    def _protocol_paused(self) -> bool:
        # Likewise (our sendfile reads it through getattr, as of any transport).
        return self._engine.protocol_paused

    def is_reading(self) -> bool:
        engine = self._engine
        return not engine.closing and not engine.paused

    def pause_reading(self) -> None:
        self._engine.pause_reading()

    def resume_reading(self) -> None:
        self._engine.resume_reading()

    def get_write_buffer_size(self) -> int:
        """Bytes buffered (or held to be sent as one burst) and not yet given to the kernel."""
        return self._engine.buffer_size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """The ``(low, high)`` water marks (note the order: asyncio's)."""
        engine = self._engine
        return (engine.low_water, engine.high_water)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the water marks: asyncio's defaults and rules (:func:`.flow.compute_water_marks`).

        Lowering the high mark below what is buffered pauses the protocol at
        once, as asyncio does.
        """
        high, low = compute_water_marks(high, low)
        self._engine.set_write_buffer_limits(high, low)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """Half-close: shut down the sending side once the buffer has drained."""
        self._engine.write_eof()

    def close(self) -> None:
        """Stop reading, flush the buffer, then close (``connection_lost(None)``)."""
        self._engine.close()

    def abort(self) -> None:
        """Close now, dropping anything still buffered."""
        self._engine.abort()

    # -- loop.sendfile()'s native path (driven by slipstream.net.sendfile) ------------

    async def begin_sendfile(self) -> tuple[socket.socket, asyncio.Future[None]]:
        """Lend the socket to ``loop.sock_sendfile()`` once the write buffer is empty.

        Returns the socket and a future that fails if the connection is lost
        (closed, aborted) while the file goes out.  Until :meth:`end_sendfile`,
        ``write()`` raises "sendfile is in progress" and the transport's claim
        on its descriptor is lifted, so the sendfile may watch it.  Pausing
        reading is the caller's job.  If this raises (the connection was lost
        while flushing, or the wait was cancelled) there is nothing to end.
        """
        engine = self._engine
        waiter = engine.make_empty_waiter()  # raises if a sendfile is running
        try:
            await waiter
            if engine.sock_closed:  # flushed, then closed in the same breath
                raise ConnectionError("Connection is closed by peer")
        except BaseException:
            engine.empty_waiter = None
            raise
        # A fresh waiter keeps write() refused, and the engine's
        # call_connection_lost() fails it: that is how the sendfile hears of a
        # close meanwhile.
        lost = engine.empty_waiter = self._loop.create_future()
        self._loop.release_fd(engine.fd, self)
        return self._sock, lost

    def end_sendfile(self) -> None:
        """Take the socket back after :meth:`begin_sendfile`; writes are accepted again."""
        engine = self._engine
        lost = engine.empty_waiter
        engine.empty_waiter = None
        if lost is not None and not lost.cancel() and not lost.cancelled():
            lost.exception()  # seen: the sendfile reported the loss its own way
        if not engine.sock_closed:
            self._loop.claim_fd(engine.fd, self)
