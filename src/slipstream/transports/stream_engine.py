"""The byte-moving half of the stream socket transport: reading, writing, closing.

:class:`~.socket_stream.SocketTransport` is what protocols see: an
:class:`asyncio.Transport`, with its extra info, repr and sendfile hand-over.
Everything that runs per byte is here instead, in :class:`StreamEngine`, and
the transport forwards to it.  Why two classes for one transport:

* Compiled (``pip install`` with a C compiler; see ``setup.py``), this module
  becomes a C type with the ``.pxd`` beside it: the read path (``recv``, the
  read-size policy, ``data_received``), ``write()`` (the straight ``send()``
  and the buffering, coalescing and water marks behind it) and the drain on
  writability run as C, with the system calls inline (``backends/syscalls.pxd``).
  Per 1 KiB echo round trip that removes two interpreter frames and the
  integers they boxed: about half of what a round trip cost.
* The transport cannot itself be that C type: it must be an
  ``asyncio.Transport`` (libraries test ``isinstance``), and that class's
  ``__slots__`` give it an instance layout no C type can share as a second
  base.  So the transport stays a Python class and holds an engine.
* The loop's readiness handles call the engine's read and drain methods
  directly, and ``transport.write`` *is* the engine's ``write`` (bound on
  the instance), so the hot path never passes through a forwarding frame.

Interpreted (no compiler, or ``SLIPSTREAM_PURE=1``) this is the same code as
a plain class, exactly as fast as the single transport class it replaced:
the hot calls land on the engine's methods without a frame in between.

The rules of moving bytes, all asyncio's:

* **Reading.**  One ``recv`` per readable event (64 KiB, or 256 KiB while a
  bulk transfer keeps filling them, or always 256 KiB where the allocator
  makes it cheap: see ``allocator.py``), one ``data_received``.  Which read
  method the loop watches is decided when the protocol is set, so the hot path
  never asks "is this a BufferedProtocol?".
* **Writing.**  ``write()`` first tries ``send()`` right away: most writes fit
  in the kernel's buffer and never touch the loop.  Only the rest is buffered
  and the descriptor watched for writability; everything written meanwhile
  queues behind it, and the next writable event hands the whole queue to the
  kernel in one ``sendmsg()``.
* **Coalescing.**  A connection that writes twice with nothing read in between
  (a response's headers, then its body) is a connection that writes in bursts,
  and from then on the first write of a burst is held until the callbacks of
  that turn have run: a callback queued behind them sends the whole burst in
  one ``send()`` / ``sendmsg()``.  On loopback TCP each ``send()`` also runs
  the receiving side's stack, so two calls cost nearly twice one.  Held bytes
  count in ``get_write_buffer_size()``; a burst that reaches the high-water
  mark goes to the kernel at once, so ``pause_writing()`` still means the
  kernel refused, as with asyncio.  After eight bursts in a row that were a
  single write (a stream sent chunk by chunk), the connection sends at once
  again, for good.  An echo, which writes once per read, never holds anything.
* **Closing.**  ``close()`` stops reading, lets the buffer drain, then calls
  ``connection_lost(None)`` once; ``abort()`` drops the buffer.  Errors close
  with ``connection_lost(exc)``; errors that are not ``OSError`` (a protocol
  callback raising) also reach the loop's exception handler, as with asyncio.

The engine owns no socket resource of its own: when the connection is over it
calls the transport's ``on_closed`` callback, which closes the socket and
tells the server.

What an idle connection keeps matters (the ``scale`` benchmark row): the
write buffer is an empty tuple until a write has to wait (an empty
``collections.deque`` is ~600 bytes), and is dropped again once it drains.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..backends import syscalls
from ..core.errors import logger
from .errors import report_fatal_error
from .flow import DEFAULT_HIGH_WATER, tell_protocol

if TYPE_CHECKING:
    from ..core import CoreLoop

__all__ = ["StreamEngine"]

# After this many writes to a transport whose connection is lost, each further
# write logs a warning: the application is writing into the void.
_LOG_THRESHOLD_FOR_CONNLOST_WRITES = 5

# A connection that gathers its writes goes back to sending each at once after
# this many bursts in a row that were a single write.
_COALESCE_PATIENCE = 8

# sendmsg() takes at most IOV_MAX buffers (1024 on Linux).
_IOV_MAX = 1024

# Python 3.11's writelines() was Transport.writelines(), i.e. write(): its error
# says "write()".  3.12 gave the socket transport its own.
_WRITELINES = "writelines" if sys.version_info >= (3, 12) else "write"

# What ``buffer`` is while nothing is buffered.
_NO_BUFFER: Any = ()

# Bound once: compiled, a C variable.  Looked up as collections.deque, the
# module attribute cost ~360 instructions each time a burst or a refused
# write starts a buffer (twice a request for a server writing headers, then
# a body).
_deque = collections.deque


class StreamEngine:
    """Reading, writing and closing for one connected stream socket.

    ``transport`` is the :class:`asyncio.Transport` the protocol sees (it is
    passed to ``connection_made`` and named in error reports); ``on_closed``
    is called once, after ``connection_lost``, to release the socket.
    """

    def __init__(
        self,
        loop: CoreLoop,
        sock: socket.socket,
        transport: asyncio.Transport,
        on_closed: Callable[[], None],
        read_sizes: tuple[int, int],
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        self.transport: asyncio.Transport | None = transport
        self.on_closed = on_closed
        # Reads start at the small size and grow to the large one while the
        # peer keeps filling them (equal sizes: always the one).
        self.min_read_size, self.max_read_size = read_sizes
        self.read_size = self.min_read_size
        self.protocol: Any = None
        self.read_ready: Any = None  # the read method for the protocol's kind
        # Set while loop.sendfile() sends natively: it resolves once the write
        # buffer is empty, and write() is refused until it is reset.
        self.empty_waiter: asyncio.Future[None] | None = None
        # Write coalescing (see "Coalescing" above): whether anything was
        # written since the last read; whether writes are gathered (0 not
        # yet, > 0 yes, counting down, -1 never again); whether the buffer
        # is gathering now.
        self.wrote_since_read = False
        self.coalesce = 0
        self.corked = False
        self.buffer: collections.deque[bytes | memoryview] = _NO_BUFFER
        self.buffer_size = 0
        self.high_water = DEFAULT_HIGH_WATER
        self.low_water = DEFAULT_HIGH_WATER // 4
        self.protocol_paused = False  # pause_writing() called, resume_writing() not yet
        self.closing = False  # close() or a fatal error happened
        self.conn_lost = 0  # > 0 once connection_lost() is scheduled
        self.paused = False  # pause_reading() in effect
        self.reading = False  # the descriptor is watched for reading
        self.eof_received = False  # the peer shut down its side
        self.eof = False  # write_eof() was called
        self.sock_closed = False  # connection_lost() ran and on_closed() was called

    # -- protocol ------------------------------------------------------------------

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Drive ``protocol`` from now on (a Protocol or a BufferedProtocol)."""
        self.protocol = protocol
        if isinstance(protocol, asyncio.BufferedProtocol):
            read_ready = self.read_into_buffer
        else:
            read_ready = self.read_data
        if read_ready != self.read_ready:
            self.read_ready = read_ready
            if self.reading:
                self.loop.watch_readable(self.fd, read_ready)

    def start(self, waiter: asyncio.Future[None] | None) -> None:
        """Start reading (after ``connection_made()`` ran), then wake the creator's waiter."""
        if not self.paused and not self.closing and not self.eof_received:
            self.reading = True
            self.loop.watch_readable(self.fd, self.read_ready)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- reading ---------------------------------------------------------------------

    def pause_reading(self) -> None:
        if self.closing or self.paused:
            return
        self.paused = True
        self.stop_reading()
        if self.loop.get_debug():
            logger.debug("%r pauses reading", self.transport)

    def resume_reading(self) -> None:
        if self.closing or not self.paused:
            return
        self.paused = False
        if not self.eof_received:
            self.reading = True
            self.loop.watch_readable(self.fd, self.read_ready)
        if self.loop.get_debug():
            logger.debug("%r resumes reading", self.transport)

    def is_closing(self) -> bool:
        """The transport's ``is_closing()`` (kept in its slot: see ``SocketTransport``)."""
        return self.closing

    def stop_reading(self) -> None:
        if self.reading:
            self.reading = False
            self.loop.unwatch_readable(self.fd)

    def read_data(self) -> None:
        """The descriptor is readable and the protocol is a Protocol."""
        size = self.read_size
        try:
            # (The method itself, interpreted: see syscalls.DIRECT.)
            data = syscalls.recv_sized(self.sock, size) if syscalls.DIRECT else self.sock.recv(size)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.fatal_error(exc, "Fatal read error on socket transport")
            return
        length = len(data)
        if not length:
            self.read_eof()
            return
        if length == size:
            self.read_size = self.max_read_size  # the peer is streaming: read more at a time
        elif size > self.min_read_size and length < self.min_read_size:
            self.read_size = self.min_read_size
        self.wrote_since_read = False
        try:
            # Looked up on each call, never cached: a protocol may replace
            # its data_received while connected (tests and parsers do).
            self.protocol.data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.fatal_error(exc, "Fatal error: protocol.data_received() call failed.")
        # If data_received() kept no reference, the next read may reuse it.
        # (Interpreted there is nothing to gain and the call would cost a
        # frame: RECYCLES is a C constant compiled, False otherwise.)
        if syscalls.RECYCLES:
            syscalls.recycle(data)

    def read_into_buffer(self) -> None:
        """The descriptor is readable and the protocol is a BufferedProtocol."""
        protocol = self.protocol
        try:
            buf = protocol.get_buffer(-1)
            if not len(buf):
                raise RuntimeError("get_buffer() returned an empty buffer")
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.fatal_error(exc, "Fatal error: protocol.get_buffer() call failed.")
            return
        try:
            nbytes = syscalls.recv_into(self.sock, buf)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.fatal_error(exc, "Fatal read error on socket transport")
            return
        if not nbytes:
            self.read_eof()
            return
        self.wrote_since_read = False
        try:
            protocol.buffer_updated(nbytes)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.fatal_error(exc, "Fatal error: protocol.buffer_updated() call failed.")

    def read_eof(self) -> None:
        if self.loop.get_debug():
            logger.debug("%r received EOF", self.transport)
        # Nothing more will ever be read: stop watching whatever the protocol
        # answers (a readable-at-EOF socket would otherwise spin the loop).
        self.eof_received = True
        self.stop_reading()
        try:
            keep_open = self.protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        # A true value keeps the connection half-open: the protocol may still
        # write (and must close the transport itself later).
        if not keep_open:
            self.close()

    # -- writing ---------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data``: now if the kernel takes it, else buffered (never blocks)."""
        # bytes first: one identity test instead of an isinstance() against a
        # tuple, on the call every echo and every response makes.
        if type(data) is not bytes and not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"data argument must be a bytes-like object, not {type(data).__name__!r}"
            )
        if self.eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self.empty_waiter is not None:
            raise RuntimeError("unable to write; sendfile is in progress")
        if not data:
            return
        if self.conn_lost:
            if self.conn_lost >= _LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("socket.send() raised exception.")
            self.conn_lost += 1
            return
        rest: bytes | memoryview
        # (The identity test first: compiled, it spares the generic truth
        # test of an empty buffer on the write every echo makes.)
        if (self.buffer is _NO_BUFFER or not self.buffer) and not (
            self.coalesce > 0 or (self.wrote_since_read and not self.coalesce)
        ):
            self.wrote_since_read = True
            try:
                if syscalls.DIRECT:
                    sent = syscalls.send_count(self.sock, data)
                else:
                    sent = self.sock.send(data)  # (see syscalls.DIRECT)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self.fatal_error(exc, "Fatal write error on socket transport")
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
            self.loop.watch_writable(self.fd, self.write_ready)
            self.buffer = _deque((rest,))
        else:
            if not self.buffer:
                # This connection writes in bursts: a second write came
                # before the peer said anything (a response's headers, then
                # its body).  Hold the burst's first write until the
                # callbacks of this turn have run; flush_corked, queued
                # behind them, sends all that was written meanwhile in one
                # send() or sendmsg().
                if not self.coalesce:
                    self.coalesce = _COALESCE_PATIENCE
                self.buffer = _deque()
                self.corked = True
                self.loop.call_soon(self.flush_corked)
            if type(data) is bytes:
                rest = data
            else:
                rest = memoryview(data).cast("B").tobytes()
            self.buffer.append(rest)
        self.buffer_size += len(rest)
        if self.buffer_size > self.high_water:
            if self.corked:
                # Gathering stops at the high-water mark: past it the kernel
                # is asked now, so the protocol is paused only if the kernel
                # refuses, as with asyncio's transports.
                self.flush_corked()
            if self.buffer_size > self.high_water:
                self.maybe_pause_protocol()

    def writelines(self, list_of_data: Any) -> None:
        """Write every buffer of ``list_of_data``, as one ``write`` of their concatenation."""
        if self.eof:
            raise RuntimeError(f"Cannot call {_WRITELINES}() after write_eof()")
        if self.empty_waiter is not None:
            raise RuntimeError(f"unable to {_WRITELINES}; sendfile is in progress")
        self.write(b"".join(list_of_data))

    def flush_corked(self) -> None:
        """Send a held burst (queued behind the callbacks of the turn that held it)."""
        if not self.corked:
            # Flushed early (the high-water mark), or aborted: force_close
            # empties the buffer and clears the flag together, so a held
            # buffer is never empty here.
            return
        self.corked = False
        if len(self.buffer) > 1:
            self.coalesce = _COALESCE_PATIENCE
        else:
            # Nothing joined this write: after _COALESCE_PATIENCE such bursts
            # in a row the connection sends at once again, for good (-1).
            self.coalesce -= 1
            if not self.coalesce:
                self.coalesce = -1
        self.send_buffered(False)

    def write_ready(self) -> None:
        """The descriptor turned writable."""
        self.send_buffered(True)

    def send_buffered(self, watched: bool) -> None:
        """Hand the kernel as much of the buffer as it takes, in one system call.

        The descriptor is watched for writability while some is left
        (``watched``: it is watched already).
        """
        buffer = self.buffer
        try:
            if len(buffer) == 1:
                sent = syscalls.send_count(self.sock, buffer[0])
            else:
                sent = syscalls.sendmsg_count(self.sock, buffer, min(len(buffer), _IOV_MAX))
        except (BlockingIOError, InterruptedError):
            if not watched:
                self.loop.watch_writable(self.fd, self.write_ready)
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            if watched:
                self.loop.unwatch_writable(self.fd)
            self.buffer = _NO_BUFFER
            self.buffer_size = 0
            self.fatal_error(exc, "Fatal write error on socket transport")
            self.wake_empty_waiter(exc)
            return
        self.buffer_size -= sent
        while sent:
            chunk = buffer[0]
            size = len(chunk)
            if size <= sent:
                buffer.popleft()
                sent -= size
            else:
                buffer[0] = memoryview(chunk)[sent:]
                break
        if self.protocol_paused and self.buffer_size <= self.low_water:
            self.maybe_resume_protocol()  # may write() more
        # Not the local ``buffer``: a write() above that had to wait made a
        # new deque (it found the drained one empty).
        if not self.buffer:
            self.buffer = _NO_BUFFER
            if watched:
                self.loop.unwatch_writable(self.fd)
            if self.empty_waiter is not None:
                self.wake_empty_waiter(None)
            if self.closing:
                self.conn_lost += 1
                self.call_connection_lost(None)
            elif self.eof:
                self.sock.shutdown(socket.SHUT_WR)
        elif not watched and not self.corked:
            self.loop.watch_writable(self.fd, self.write_ready)

    def write_eof(self) -> None:
        """Half-close: shut down the sending side once the buffer has drained."""
        if self.closing or self.eof:
            return
        self.eof = True
        if not self.buffer:
            self.sock.shutdown(socket.SHUT_WR)

    # -- write flow control (the rules of transports/flow.py) ------------------------

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        """Take new water marks (checked by the caller); pause now if above the new high."""
        self.high_water = high
        self.low_water = low
        self.maybe_pause_protocol()

    def maybe_pause_protocol(self) -> None:
        """Call ``protocol.pause_writing()`` if the buffer just grew above the high mark."""
        if self.protocol_paused or self.buffer_size <= self.high_water:
            return
        self.protocol_paused = True
        tell_protocol(self.loop, self.transport, self.protocol, resume=False)

    def maybe_resume_protocol(self) -> None:
        """Call ``protocol.resume_writing()`` if paused and drained to the low mark."""
        if not self.protocol_paused or self.buffer_size > self.low_water:
            return
        self.protocol_paused = False
        tell_protocol(self.loop, self.transport, self.protocol, resume=True)

    # -- sendfile's hand-over (see SocketTransport.begin_sendfile) -------------------

    def make_empty_waiter(self) -> asyncio.Future[None]:
        """A future resolved once the write buffer is empty (and writes refused till reset)."""
        if self.empty_waiter is not None:
            raise RuntimeError("Empty waiter is already set")
        waiter = self.empty_waiter = self.loop.create_future()
        if not self.buffer:
            waiter.set_result(None)
        return waiter

    def wake_empty_waiter(self, exc: BaseException | None) -> None:
        waiter = self.empty_waiter
        if waiter is None or waiter.done():
            return
        if exc is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(exc)

    # -- closing ---------------------------------------------------------------------

    def close(self) -> None:
        """Stop reading, flush the buffer, then close (``connection_lost(None)``)."""
        if self.closing:
            return
        self.closing = True
        self.stop_reading()
        if not self.buffer:
            self.conn_lost += 1
            self.loop.call_soon(self.call_connection_lost, None)

    def abort(self) -> None:
        """Close now, dropping anything still buffered."""
        if self.corked:
            # A held burst is what asyncio would have handed the kernel at
            # write() time: offer it once (never waiting), then drop the rest.
            self.flush_corked()
        self.force_close(None)

    def fatal_error(self, exc: BaseException, message: str) -> None:
        # An OSError (the peer went away, the network failed) reaches the
        # protocol through connection_lost(exc) and the log only in debug mode.
        report_fatal_error(
            self.loop, message, exc, self.transport, self.protocol, isinstance(exc, OSError)
        )
        self.force_close(exc)

    def force_close(self, exc: BaseException | None) -> None:
        if self.conn_lost:
            return
        if self.buffer:
            self.buffer = _NO_BUFFER
            self.buffer_size = 0
            self.corked = False
            self.loop.unwatch_writable(self.fd)
        if not self.closing:
            self.closing = True
            self.stop_reading()
        self.conn_lost += 1
        self.loop.call_soon(self.call_connection_lost, exc)

    def call_connection_lost(self, exc: BaseException | None) -> None:
        if self.sock_closed:
            return
        try:
            self.protocol.connection_lost(exc)
        finally:
            self.sock_closed = True
            if not self.loop.is_closed():
                self.loop.release_fd(self.fd, self.transport)
            self.on_closed()
            # Break the cycles (protocol <-> transport, transport <-> engine)
            # so that all three die by refcount.
            self.protocol = None
            self.transport = None
            self.wake_empty_waiter(ConnectionError("Connection is closed by peer"))
