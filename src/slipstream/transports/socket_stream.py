"""The TCP / Unix stream socket transport: the whole :class:`asyncio.Transport` API.

How bytes move, and why it is shaped this way:

* **Reading.**  The transport watches its descriptor with the core's
  ``watch_readable``; the core queues the long-lived watch handle when epoll says
  readable, and the handle calls straight into the transport's read method:
  one ``recv`` (64 KiB, or 256 KiB while a bulk transfer keeps filling them),
  one ``data_received``.  No per-event objects besides the data itself.  Which of
  the two methods is registered is decided when the protocol is set, so the
  hot path never asks "is this a BufferedProtocol?".
* **Writing.**  ``write()`` first tries ``send()`` right away: most writes fit
  in the kernel's buffer and never touch the loop.  Only the rest is buffered and
  the descriptor watched for writability; everything written meanwhile queues
  behind it, and the next writable event hands the whole queue to the kernel in
  one ``sendmsg()``.
* **Coalescing.**  A connection that writes twice with nothing read in between
  (a response's headers, then its body) is a connection that writes in bursts,
  and from then on the first write of a burst is held until the callbacks of
  that turn have run: a callback queued behind them sends the whole burst in
  one ``send()`` / ``sendmsg()``.  On loopback TCP each ``send()`` also runs the
  receiving side's stack, so two calls cost nearly twice one.  Held bytes
  count in ``get_write_buffer_size()``; a burst that reaches the high-water
  mark goes to the kernel at once, so ``pause_writing()`` still means the
  kernel refused, as with asyncio.  After eight bursts in a row that were a
  single write (a stream sent chunk by chunk), the connection sends at once
  again, for good.  An echo, which writes once per read, never holds anything;
  what it pays for the test is a flag stored per read and per write.
* **Closing.**  ``close()`` stops reading, lets the buffer drain, then calls
  ``connection_lost(None)`` once; ``abort()`` drops the buffer.  Errors close the
  transport with ``connection_lost(exc)``; errors that are not ``OSError`` (a
  protocol callback raising) are also reported to the loop's exception handler,
  as asyncio does.

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
  ``_buffer`` is an empty tuple, which every "is anything buffered?" test
  treats the same.
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
import collections
import itertools
import socket
import sys
import warnings
from asyncio.constants import _SendfileMode as SendfileMode
from asyncio.trsock import TransportSocket
from typing import TYPE_CHECKING, Any, Protocol

from .. import backends
from ..core.errors import logger
from .allocator import LARGE_READ, SMALL_READ, large_reads_are_cheap
from .errors import report_fatal_error
from .flow import WriteFlowControl

if TYPE_CHECKING:
    from ..core import CoreLoop

__all__ = ["ConnectionTracker", "SocketTransport", "is_tcp_stream", "set_nodelay"]

# The socket system calls of the hot path: compiled, straight to the kernel
# (backends/socket_calls.py); module globals, so each call is one lookup.
_recv = backends.recv
_recv_into = backends.recv_into
_send = backends.send

# After this many writes to a transport whose connection is lost, each further
# write logs a warning: the application is writing into the void.
_LOG_THRESHOLD_FOR_CONNLOST_WRITES = 5

# A connection that gathers its writes goes back to sending each at once after
# this many bursts in a row that were a single write.
_COALESCE_PATIENCE = 8

# sendmsg() takes at most IOV_MAX buffers (1024 on Linux).
_IOV_MAX = 1024

_TCP_FAMILIES = frozenset({socket.AF_INET, socket.AF_INET6})

# Python 3.11's writelines() was Transport.writelines(), i.e. write(): its error
# says "write()".  3.12 gave the socket transport its own.
_WRITELINES = "writelines" if sys.version_info >= (3, 12) else "write"


# "Not known yet": the local address before anyone asked for it.
_UNKNOWN: Any = object()

# What _buffer is while nothing is buffered (see "What an idle connection costs").
_NO_BUFFER: Any = ()


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


class SocketTransport(WriteFlowControl, asyncio.Transport):
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
    #
    # The sizes in use are instance attributes set in __init__, never class
    # defaults an instance shadows: CPython 3.12+ cannot specialise a load of
    # an instance attribute that shadows a class attribute, and each such
    # load on the read path cost ~200 instructions (callgrind).  The same
    # goes for _empty_waiter, which every write() reads.
    max_size = 127 * 1024

    # Read by asyncio-compatible helpers (start_tls, sendfile) to know what the
    # transport supports.
    _start_tls_compatible = True
    _sendfile_compatible = SendfileMode.TRY_NATIVE

    _loop: CoreLoop
    _fd = -1  # set before anything can fail, so __del__ can always read it
    _sock_closed = True
    _server: ConnectionTracker | None = None
    # The read method for the protocol's kind (set_protocol() picks it).
    _read_ready: Any = None
    # Set while loop.sendfile() sends natively: it resolves once the write
    # buffer is empty, and write() is refused until it is reset.
    _empty_waiter: asyncio.Future[None] | None

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
        self._fd = fd = sock.fileno()
        self._sock_closed = False
        if large_reads_are_cheap():
            self._read_size = self._min_read_size = self._max_read_size = LARGE_READ
        else:
            self._read_size = self._min_read_size = SMALL_READ
            self._max_read_size = self.max_size
        self._empty_waiter = None
        # Write coalescing (see "Coalescing" above): whether anything was
        # written since the last read; whether writes are gathered (0 not
        # yet, > 0 yes, counting down, -1 never again); whether the buffer
        # is gathering now.
        self._wrote_since_read = False
        self._coalesce = 0
        self._corked = False
        self._buffer: collections.deque[bytes | memoryview] = _NO_BUFFER
        self._buffer_size = 0
        self._closing = False  # close() or a fatal error happened
        self._conn_lost = 0  # > 0 once connection_lost() is scheduled
        self._paused = False  # pause_reading() in effect
        self._reading = False  # the descriptor is watched for reading
        self._eof_received = False  # the peer shut down its side
        self._eof = False  # write_eof() was called
        self._protocol: Any = None
        self.set_protocol(protocol)
        self._server = server
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
        loop.call_soon(self._connection_started, waiter)

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
        if self._sock_closed:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._fd}")
        if not self._sock_closed and not self._loop.is_closed():
            info.append("read=polling" if self._reading else "read=idle")
            state = "polling" if self._buffer else "idle"
            info.append(f"write=<{state}, bufsize={self._buffer_size}>")
        return "<{}>".format(" ".join(info))

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if not self._sock_closed:
            message = f"unclosed transport {self!r}"
            self._sock_closed = True
            self._sock.close()
            if self._server is not None:
                self._server._detach(self._fd, self)
                self._server = None
            # Last: with warnings turned into errors this raises, and the
            # server must have heard of the end all the same (it holds its
            # clients by descriptor number, which nothing else would clear).
            _warn(message, ResourceWarning, source=self)

    # -- protocol ------------------------------------------------------------------

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Switch protocols (a Protocol and a BufferedProtocol are both fine)."""
        self._protocol = protocol
        if isinstance(protocol, asyncio.BufferedProtocol):
            read_ready = self._read_ready_into_buffer
        else:
            read_ready = self._read_ready_data
        if read_ready != self._read_ready:
            self._read_ready = read_ready
            if self._reading:
                self._loop.watch_readable(self._fd, read_ready)

    def get_protocol(self) -> Any:
        return self._protocol

    def _connection_started(self, waiter: asyncio.Future[None] | None) -> None:
        if not self._paused and not self._closing and not self._eof_received:
            self._reading = True
            self._loop.watch_readable(self._fd, self._read_ready)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- reading ---------------------------------------------------------------------

    def is_reading(self) -> bool:
        return not self._closing and not self._paused

    def pause_reading(self) -> None:
        if self._closing or self._paused:
            return
        self._paused = True
        self._stop_reading()
        if self._loop.get_debug():
            logger.debug("%r pauses reading", self)

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        if not self._eof_received:
            self._reading = True
            self._loop.watch_readable(self._fd, self._read_ready)
        if self._loop.get_debug():
            logger.debug("%r resumes reading", self)

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.unwatch_readable(self._fd)

    def _read_ready_data(self) -> None:
        size = self._read_size
        try:
            data = _recv(self._sock, size)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on socket transport")
            return
        if not data:
            self._read_eof()
            return
        if len(data) == size:
            self._read_size = self._max_read_size  # the peer is streaming: read more at a time
        elif size > self._min_read_size and len(data) < self._min_read_size:
            self._read_size = self._min_read_size
        self._wrote_since_read = False
        try:
            self._protocol.data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")

    def _read_ready_into_buffer(self) -> None:
        protocol = self._protocol
        try:
            buf = protocol.get_buffer(-1)
            if not len(buf):
                raise RuntimeError("get_buffer() returned an empty buffer")
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.get_buffer() call failed.")
            return
        try:
            nbytes = _recv_into(self._sock, buf)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on socket transport")
            return
        if not nbytes:
            self._read_eof()
            return
        self._wrote_since_read = False
        try:
            protocol.buffer_updated(nbytes)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.buffer_updated() call failed.")

    def _read_eof(self) -> None:
        if self._loop.get_debug():
            logger.debug("%r received EOF", self)
        # Nothing more will ever be read: stop watching whatever the protocol
        # answers (a readable-at-EOF socket would otherwise spin the loop).
        self._eof_received = True
        self._stop_reading()
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        # A true value keeps the connection half-open: the protocol may still
        # write (and must close the transport itself later).
        if not keep_open:
            self.close()

    # -- writing ---------------------------------------------------------------------

    def get_write_buffer_size(self) -> int:
        return self._buffer_size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data``: now if the kernel takes it, else buffered (never blocks)."""
        # bytes first: one identity test instead of an isinstance() against a
        # tuple, on the call every echo and every response makes.
        if type(data) is not bytes and not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"data argument must be a bytes-like object, not {type(data).__name__!r}"
            )
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self._empty_waiter is not None:
            raise RuntimeError("unable to write; sendfile is in progress")
        if not data:
            return
        if self._conn_lost:
            if self._conn_lost >= _LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("socket.send() raised exception.")
            self._conn_lost += 1
            return
        rest: bytes | memoryview
        if not self._buffer and not (
            self._coalesce > 0 or (self._wrote_since_read and not self._coalesce)
        ):
            self._wrote_since_read = True
            try:
                sent = _send(self._sock, data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal write error on socket transport")
                return
            if type(data) is bytes:
                if sent == len(data):
                    return
                rest = memoryview(data)[sent:] if sent else data
            else:
                view = memoryview(data).cast("B")
                if sent == len(view):
                    return
                # Copied: the caller may reuse a bytearray once write() returns.
                rest = view[sent:].tobytes()
            self._loop.watch_writable(self._fd, self._write_ready)
            self._buffer = collections.deque((rest,))
        else:
            if not self._buffer:
                # This connection writes in bursts: a second write came
                # before the peer said anything (a response's headers, then
                # its body).  Hold the burst's first write until the
                # callbacks of this turn have run; _flush_corked, queued
                # behind them, sends all that was written meanwhile in one
                # send() or sendmsg().
                if not self._coalesce:
                    self._coalesce = _COALESCE_PATIENCE
                self._buffer = collections.deque()
                self._corked = True
                self._loop.call_soon(self._flush_corked)
            if type(data) is bytes:
                rest = data
            else:
                rest = memoryview(data).cast("B").tobytes()
            self._buffer.append(rest)
        self._buffer_size += len(rest)
        if self._buffer_size > self._high_water:
            if self._corked:
                # Gathering stops at the high-water mark: past it the kernel
                # is asked now, so the protocol is paused only if the kernel
                # refuses, as with asyncio's transports.
                self._flush_corked()
            if self._buffer_size > self._high_water and not self._protocol_paused:
                self._maybe_pause_protocol()

    def _flush_corked(self) -> None:
        if not self._corked:
            # Flushed early (the high-water mark), or aborted: _force_close
            # empties the buffer and clears the flag together, so a held
            # buffer is never empty here.
            return
        self._corked = False
        if len(self._buffer) > 1:
            self._coalesce = _COALESCE_PATIENCE
        else:
            # Nothing joined this write: after _COALESCE_PATIENCE such bursts
            # in a row the connection sends at once again, for good (-1).
            self._coalesce -= 1
            if not self._coalesce:
                self._coalesce = -1
        self._send_buffered(False)

    def writelines(self, list_of_data: Any) -> None:
        """Write every buffer of ``list_of_data``, as one ``write`` of their concatenation."""
        if self._eof:
            raise RuntimeError(f"Cannot call {_WRITELINES}() after write_eof()")
        if self._empty_waiter is not None:
            raise RuntimeError(f"unable to {_WRITELINES}; sendfile is in progress")
        self.write(b"".join(list_of_data))

    def _write_ready(self) -> None:
        # The descriptor turned writable.
        self._send_buffered(True)

    def _send_buffered(self, watched: bool) -> None:
        # Hand the kernel as much of the buffer as it takes, in one system
        # call; watch for writability while some is left (``watched``: the
        # descriptor is watched already).
        buffer = self._buffer
        try:
            if len(buffer) == 1:
                sent = _send(self._sock, buffer[0])
            elif len(buffer) <= _IOV_MAX:
                sent = self._sock.sendmsg(buffer)
            else:
                sent = self._sock.sendmsg(itertools.islice(buffer, _IOV_MAX))
        except (BlockingIOError, InterruptedError):
            if not watched:
                self._loop.watch_writable(self._fd, self._write_ready)
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            if watched:
                self._loop.unwatch_writable(self._fd)
            self._buffer = _NO_BUFFER
            self._buffer_size = 0
            self._fatal_error(exc, "Fatal write error on socket transport")
            self._wake_empty_waiter(exc)
            return
        self._buffer_size -= sent
        while sent:
            chunk = buffer[0]
            size = len(chunk)
            if size <= sent:
                buffer.popleft()
                sent -= size
            else:
                buffer[0] = memoryview(chunk)[sent:]
                break
        if self._protocol_paused and self._buffer_size <= self._low_water:
            self._maybe_resume_protocol()  # may write() more
        # Not the local ``buffer``: a write() above that had to wait made a
        # new deque (it found the drained one empty).
        if not self._buffer:
            self._buffer = _NO_BUFFER  # see "What an idle connection costs"
            if watched:
                self._loop.unwatch_writable(self._fd)
            if self._empty_waiter is not None:
                self._wake_empty_waiter(None)
            if self._closing:
                self._conn_lost += 1
                self._call_connection_lost(None)
            elif self._eof:
                self._sock.shutdown(socket.SHUT_WR)
        elif not watched and not self._corked:
            self._loop.watch_writable(self._fd, self._write_ready)

    def can_write_eof(self) -> bool:
        return True

    def _make_empty_waiter(self) -> asyncio.Future[None]:
        """A future resolved once the write buffer is empty (and writes refused till reset)."""
        if self._empty_waiter is not None:
            raise RuntimeError("Empty waiter is already set")
        waiter = self._empty_waiter = self._loop.create_future()
        if not self._buffer:
            waiter.set_result(None)
        return waiter

    def _reset_empty_waiter(self) -> None:
        self._empty_waiter = None

    def _wake_empty_waiter(self, exc: BaseException | None) -> None:
        waiter = self._empty_waiter
        if waiter is None or waiter.done():
            return
        if exc is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(exc)

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
        waiter = self._make_empty_waiter()  # raises if a sendfile is running
        try:
            await waiter
            if self._sock_closed:  # flushed, then closed in the same breath
                raise ConnectionError("Connection is closed by peer")
        except BaseException:
            self._reset_empty_waiter()
            raise
        # A fresh waiter keeps write() refused, and _call_connection_lost()
        # fails it: that is how the sendfile hears of a close meanwhile.
        lost = self._empty_waiter = self._loop.create_future()
        self._loop.release_fd(self._fd, self)
        return self._sock, lost

    def end_sendfile(self) -> None:
        """Take the socket back after :meth:`begin_sendfile`; writes are accepted again."""
        lost = self._empty_waiter
        self._empty_waiter = None
        if lost is not None and not lost.cancel() and not lost.cancelled():
            lost.exception()  # seen: the sendfile reported the loss its own way
        if not self._sock_closed:
            self._loop.claim_fd(self._fd, self)

    def write_eof(self) -> None:
        """Half-close: shut down the sending side once the buffer has drained."""
        if self._closing or self._eof:
            return
        self._eof = True
        if not self._buffer:
            self._sock.shutdown(socket.SHUT_WR)

    # -- closing ---------------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stop reading, flush the buffer, then close (``connection_lost(None)``)."""
        if self._closing:
            return
        self._closing = True
        self._stop_reading()
        if not self._buffer:
            self._conn_lost += 1
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        """Close now, dropping anything still buffered."""
        if self._corked:
            # A held burst is what asyncio would have handed the kernel at
            # write() time: offer it once (never waiting), then drop the rest.
            self._flush_corked()
        self._force_close(None)

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        # An OSError (the peer went away, the network failed) reaches the
        # protocol through connection_lost(exc) and the log only in debug mode.
        report_fatal_error(self._loop, message, exc, self, self._protocol, isinstance(exc, OSError))
        self._force_close(exc)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        if self._buffer:
            self._buffer = _NO_BUFFER
            self._buffer_size = 0
            self._corked = False
            self._loop.unwatch_writable(self._fd)
        if not self._closing:
            self._closing = True
            self._stop_reading()
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        if self._sock_closed:
            return
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._sock_closed = True
            if not self._loop.is_closed():
                self._loop.release_fd(self._fd, self)
            if self._sockname is _UNKNOWN:
                # Last chance: asyncio answers it after the close too.
                self._sockname = self._ask_sockname()
            self._sock.close()
            # Break the protocol <-> transport cycle so both die by refcount.
            self._protocol = None
            server = self._server
            if server is not None:
                self._server = None
                server._detach(self._fd, self)
            self._wake_empty_waiter(ConnectionError("Connection is closed by peer"))
