"""Transports over pipes, sockets and character devices (ttys, ptys).

:class:`ReadPipeTransport` and :class:`WritePipeTransport` are what
``loop.connect_read_pipe`` and ``loop.connect_write_pipe`` return, and what a
subprocess's stdin, stdout and stderr are wired through.  They behave like
asyncio's Unix pipe transports, call for call, because streams and
``asyncio.subprocess`` depend on that order:

* ``connection_made`` is scheduled with ``call_soon``; reading starts only in
  a later callback, so no ``data_received`` can come before it.
* At end of file: ``eof_received``, then ``connection_lost(None)``, both
  scheduled; the descriptor is closed after ``connection_lost`` returns.
* A pty master reports ``EIO`` once the slave side is closed.  That is how a
  terminal says "no more data", not a fault, so it is not reported to the
  exception handler; the protocol sees ``connection_lost(OSError(EIO))``,
  exactly as on asyncio.

Each transport claims its descriptor from the loop (``claim_fd``) while it is
open, so ``add_reader`` on it raises instead of silently stealing the
transport's readiness callback.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import warnings
from typing import Any

from ..core import CoreLoop
from ..core.errors import logger
from .errors import report_fatal_error
from .flow import WriteFlowControl

# One read takes at most this much: a pipe holds 64 KiB by default, so a
# bigger request would rarely be filled, and a smaller one would need two
# system calls to empty a full pipe.
MAX_READ = 64 * 1024

# After this many writes to a transport whose peer is gone, each further one
# is logged (an application that never notices is probably spinning).
_LOG_THRESHOLD_FOR_CONNLOST_WRITES = 5


def _set_result_unless_cancelled(waiter: asyncio.Future[None]) -> None:
    if not waiter.cancelled():
        waiter.set_result(None)


def _pipe_mode(fileno: int) -> int:
    return os.fstat(fileno).st_mode


class _PipeTransportBase:
    """State shared by both directions: the pipe object, its descriptor, the loop."""

    _extra: dict[str, Any]  # asyncio.BaseTransport's, undeclared in typeshed
    _loop: CoreLoop | None
    _pipe: Any
    _fileno: int
    _closing: bool

    def _describe(self, polling: bool) -> str:
        info = [type(self).__name__]
        if self._pipe is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._fileno}")
        if self._pipe is not None:
            info.append("polling" if polling else "idle")
        return "<{}>".format(" ".join(info))

    def _close_pipe(self) -> None:
        loop = self._loop
        if loop is not None:
            loop.release_fd(self._fileno, self)
        self._pipe.close()
        self._pipe = None
        self._loop = None


class ReadPipeTransport(_PipeTransportBase, asyncio.ReadTransport):
    """The read end of a pipe, socket or character device, driven by the loop."""

    def __init__(
        self,
        loop: CoreLoop,
        pipe: Any,
        protocol: asyncio.BaseProtocol,
        waiter: asyncio.Future[None] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(extra)
        self._extra["pipe"] = pipe
        fileno = pipe.fileno()
        mode = _pipe_mode(fileno)
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)):
            raise ValueError("Pipe transport is for pipes/sockets only.")
        self._loop = loop
        self._pipe = pipe
        self._fileno = fileno
        self._protocol: Any = protocol
        self._closing = False
        self._paused = False
        self._polling = False
        os.set_blocking(fileno, False)
        loop.claim_fd(fileno, self)
        loop.call_soon(protocol.connection_made, self)
        # Reading starts only once connection_made() has run.
        loop.call_soon(self._start_polling)
        if waiter is not None:
            loop.call_soon(_set_result_unless_cancelled, waiter)

    def __repr__(self) -> str:
        return self._describe(self._polling)

    def _start_polling(self) -> None:
        if self._paused or self._closing or self._loop is None:
            return
        self._loop.watch_readable(self._fileno, self._read_ready)
        self._polling = True

    def _stop_polling(self) -> None:
        if self._polling and self._loop is not None:
            self._polling = False
            self._loop.unwatch_readable(self._fileno)

    def _read_ready(self) -> None:
        try:
            data = os.read(self._fileno, MAX_READ)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal_error(exc, "Fatal read error on pipe transport")
            return
        if data:
            self._protocol.data_received(data)
            return
        loop = self._loop
        assert loop is not None
        if loop.get_debug():
            logger.info("%r was closed by peer", self)
        self._closing = True
        self._stop_polling()
        loop.call_soon(self._protocol.eof_received)
        loop.call_soon(self._call_connection_lost, None)

    # -- the ReadTransport API -----------------------------------------------------

    def is_reading(self) -> bool:
        """True unless reading is paused or the transport is closing."""
        return not self._paused and not self._closing

    def pause_reading(self) -> None:
        """Stop calling ``data_received`` until :meth:`resume_reading`."""
        if not self.is_reading():
            return
        self._paused = True
        self._stop_polling()
        if self._loop is not None and self._loop.get_debug():
            logger.debug("%r pauses reading", self)

    def resume_reading(self) -> None:
        """Undo :meth:`pause_reading`."""
        if self._closing or not self._paused:
            return
        self._paused = False
        self._start_polling()
        if self._loop is not None and self._loop.get_debug():
            logger.debug("%r resumes reading", self)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Hand further events to ``protocol``."""
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        """The protocol that receives this transport's events."""
        return self._protocol  # type: ignore[no-any-return]

    def is_closing(self) -> bool:
        """True once the transport is closing or closed."""
        return self._closing

    def close(self) -> None:
        """Stop reading; ``connection_lost(None)`` follows in a later callback."""
        if not self._closing:
            self._close(None)

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if getattr(self, "_pipe", None) is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._pipe.close()

    # -- closing -----------------------------------------------------------------------

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        # EIO from a pty whose other side is closed: end of data, not a fault.
        expected = isinstance(exc, OSError) and exc.errno == errno.EIO
        report_fatal_error(self._loop, message, exc, self, self._protocol, expected)
        self._close(exc)

    def _close(self, exc: BaseException | None) -> None:
        self._closing = True
        self._stop_polling()
        assert self._loop is not None
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._close_pipe()
            self._protocol = None


class WritePipeTransport(_PipeTransportBase, WriteFlowControl, asyncio.Transport):
    """The write end of a pipe, socket or character device, with a write buffer.

    ``write()`` tries ``os.write`` at once and buffers only what the pipe did
    not take; the buffer is flushed when the descriptor becomes writable.

    It derives from ``asyncio.Transport``, not only ``WriteTransport``, because
    asyncio's write pipe transport does (through its flow-control mixin): code
    written against asyncio sees ``isinstance(t, asyncio.ReadTransport)`` true and
    gets ``NotImplementedError`` from ``pause_reading()``, not ``AttributeError``.
    """

    _loop: CoreLoop | None

    def __init__(
        self,
        loop: CoreLoop,
        pipe: Any,
        protocol: asyncio.BaseProtocol,
        waiter: asyncio.Future[None] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(extra)
        self._extra["pipe"] = pipe
        fileno = pipe.fileno()
        mode = _pipe_mode(fileno)
        is_fifo = stat.S_ISFIFO(mode)
        is_socket = stat.S_ISSOCK(mode)
        if not (is_fifo or is_socket or stat.S_ISCHR(mode)):
            raise ValueError("Pipe transport is only for pipes, sockets and character devices")
        self._loop = loop
        self._pipe = pipe
        self._fileno = fileno
        self._protocol: Any = protocol
        self._buffer = bytearray()
        self._conn_lost = 0
        self._closing = False  # set by close() and write_eof()
        self._watching_peer = False
        self._lost_scheduled = False
        os.set_blocking(fileno, False)
        loop.claim_fd(fileno, self)
        loop.call_soon(protocol.connection_made, self)
        if is_fifo or is_socket:
            # The write end of a pipe never becomes readable, but the kernel
            # reports it as "readable" (POLLERR for a pipe, POLLIN/HUP with an
            # EOF for a socket) once the reading side is closed.  Watching for
            # that tells us the peer is gone even while we have nothing to
            # write.  A tty has no such signal, so ptys are not watched.
            loop.call_soon(self._watch_peer)
        if waiter is not None:
            loop.call_soon(_set_result_unless_cancelled, waiter)

    def __repr__(self) -> str:
        text = self._describe(bool(self._buffer))
        if self._pipe is not None:
            text = f"{text[:-1]} bufsize={len(self._buffer)}>"
        return text

    def _watch_peer(self) -> None:
        if self._closing or self._loop is None:
            return
        self._loop.watch_readable(self._fileno, self._peer_closed)
        self._watching_peer = True

    def _unwatch_peer(self) -> None:
        if self._watching_peer and self._loop is not None:
            self._watching_peer = False
            self._loop.unwatch_readable(self._fileno)

    def _peer_closed(self) -> None:
        assert self._loop is not None
        if self._loop.get_debug():
            logger.info("%r was closed by peer", self)
        if self._buffer:
            self._close(BrokenPipeError())
        else:
            self._close(None)

    # -- writing ---------------------------------------------------------------------

    def get_write_buffer_size(self) -> int:
        """Bytes written but not yet taken by the pipe."""
        return len(self._buffer)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write ``data``; what the pipe does not take now is buffered."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"data argument must be a bytes-like object, not {type(data).__name__!r}"
            )
        if not data:
            return
        if self._conn_lost or self._closing:
            if self._conn_lost >= _LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("pipe closed by peer or os.write(pipe, data) raised exception.")
            self._conn_lost += 1
            return
        if type(data) is memoryview and data.itemsize != 1:
            data = data.cast("B")  # so that len() counts bytes
        buffer = self._buffer
        if not buffer:
            try:
                n = os.write(self._fileno, data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._conn_lost += 1
                self._fatal_error(exc, "Fatal write error on pipe transport")
                return
            if n == len(data):
                return
            if n:
                data = memoryview(data)[n:]
            assert self._loop is not None
            self._loop.watch_writable(self._fileno, self._write_ready)
        buffer += data
        self._maybe_pause_protocol()

    def _write_ready(self) -> None:
        buffer = self._buffer
        try:
            n = os.write(self._fileno, buffer)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            buffer.clear()
            self._conn_lost += 1
            assert self._loop is not None
            self._loop.unwatch_writable(self._fileno)
            self._fatal_error(exc, "Fatal write error on pipe transport")
            return
        if n != len(buffer):
            del buffer[:n]
            return
        buffer.clear()
        assert self._loop is not None
        self._loop.unwatch_writable(self._fileno)
        self._maybe_resume_protocol()  # may write more
        if self._closing and not buffer and not self._lost_scheduled:
            self._unwatch_peer()
            self._lost_scheduled = True
            self._call_connection_lost(None)

    def can_write_eof(self) -> bool:
        """Pipes support :meth:`write_eof` (it closes the write end)."""
        return True

    def write_eof(self) -> None:
        """Close the write end once the buffer is flushed."""
        if self._closing:
            return
        assert self._pipe is not None
        self._closing = True
        if not self._buffer:
            self._unwatch_peer()
            self._schedule_connection_lost(None)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Hand further events to ``protocol``."""
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        """The protocol that receives this transport's events."""
        return self._protocol  # type: ignore[no-any-return]

    def is_closing(self) -> bool:
        """True once the transport is closing or closed."""
        return self._closing

    def close(self) -> None:
        """Flush the buffer, then close (for a pipe that is all ``write_eof`` does)."""
        if self._pipe is not None and not self._closing:
            self.write_eof()

    def abort(self) -> None:
        """Close now, dropping anything still buffered."""
        self._close(None)

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if getattr(self, "_pipe", None) is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._pipe.close()

    # -- closing -----------------------------------------------------------------------

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        # EPIPE and friends: the reader went away, which the protocol learns
        # from connection_lost(exc).
        expected = isinstance(exc, OSError)
        report_fatal_error(self._loop, message, exc, self, self._protocol, expected)
        self._close(exc)

    def _close(self, exc: BaseException | None) -> None:
        self._closing = True
        loop = self._loop
        if loop is None or self._lost_scheduled:
            return
        if self._buffer:
            loop.unwatch_writable(self._fileno)
        self._buffer.clear()
        self._unwatch_peer()
        self._schedule_connection_lost(exc)

    def _schedule_connection_lost(self, exc: BaseException | None) -> None:
        # close() followed by abort() must not report the loss twice.
        self._lost_scheduled = True
        assert self._loop is not None
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._close_pipe()
            self._protocol = None
