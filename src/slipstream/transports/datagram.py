"""The datagram transport: what ``loop.create_datagram_endpoint`` returns.

It behaves like asyncio's selector datagram transport, call for call:

* ``connection_made`` is scheduled with ``call_soon``, and reading starts in a
  later callback, so no ``datagram_received`` can come before it; the
  endpoint's waiter is woken after both.
* ``sendto`` first tries the system call.  Only a datagram the kernel refuses
  with ``EAGAIN`` is queued (as an immutable copy, with its address); the queue
  is flushed when the socket becomes writable, and the protocol's
  ``pause_writing``/``resume_writing`` follow its size against the high and low
  water marks.
* An ``OSError`` from ``sendto``/``recvfrom`` (an ICMP "port unreachable"
  reported on a connected socket, a full network buffer) is not fatal to a
  datagram endpoint: it goes to the protocol's ``error_received`` and the
  transport carries on.  Anything else is a fatal error.
* ``close()`` stops reading at once, lets queued datagrams drain, then calls
  ``connection_lost(None)``; ``abort()`` drops the queue.

Deliberate differences from asyncio, all of them bug fixes:

* An empty datagram is sent (Python 3.11 and 3.12 silently drop it; 3.13 sends
  it).  A zero-length UDP datagram is a real message.
* ``get_write_buffer_size()`` counts each queued datagram's bytes plus 8 (its
  UDP header), as 3.13 does, and gives the same 8 back when it is sent (3.13
  forgets to, so its count only grows).
* Once the connection is lost, ``sendto`` drops the datagram (and warns after
  a few attempts) for unconnected endpoints too, instead of failing on a
  closed socket.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import warnings
from asyncio.trsock import TransportSocket
from typing import Any

from .. import backends
from ..core import CoreLoop
from ..core.errors import logger
from .errors import report_fatal_error
from .flow import WriteFlowControl

__all__ = ["DatagramTransport"]

# What one recvfrom() asks for.  A UDP datagram carries at most 65,507 bytes
# over IPv4 and 65,527 over IPv6 (jumbograms aside), so 64 KiB never truncates
# one; a Unix datagram can be as large as the socket's send buffer, so those
# get asyncio's 256 KiB.  recvfrom() allocates the full size before shrinking
# the result, which is why the small size matters for UDP.
_UDP_MAX_SIZE = 64 * 1024
_OTHER_MAX_SIZE = 256 * 1024

# The socket calls, compiled where they were built (backends/socket_calls.py):
# recvfrom and sendto straight to the kernel on an IPv4 socket (numeric
# addresses; a name still goes through the socket method and its resolver).
_recvfrom = backends.recvfrom
_sendto = backends.sendto
_send = backends.send

# Bytes counted per queued datagram on top of its payload: its UDP header.
_DATAGRAM_OVERHEAD = 8

# After this many sends on a transport whose connection is lost, each further
# one is logged (an application that never notices is probably spinning).
_LOG_THRESHOLD_FOR_CONNLOST_WRITES = 5


def _set_result_unless_cancelled(waiter: asyncio.Future[None]) -> None:
    if not waiter.cancelled():
        waiter.set_result(None)


class DatagramTransport(WriteFlowControl, asyncio.DatagramTransport, asyncio.Transport):
    """A UDP or Unix datagram socket driven by the loop (see the module docstring)."""

    _sock: socket.socket | None = None  # read by __del__, even if __init__ failed
    _extra: dict[str, Any]  # set by asyncio.BaseTransport, read by get_extra_info()

    def __init__(
        self,
        loop: CoreLoop,
        sock: socket.socket,
        protocol: asyncio.BaseProtocol,
        address: Any = None,
        waiter: asyncio.Future[None] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(extra)
        fd = sock.fileno()
        loop.check_fd_unowned(fd)
        self._extra["socket"] = TransportSocket(sock)
        try:
            self._extra["sockname"] = sock.getsockname()
        except OSError:
            self._extra["sockname"] = None
        if "peername" not in self._extra:
            try:
                self._extra["peername"] = sock.getpeername()
            except OSError:
                self._extra["peername"] = None
        self._loop: CoreLoop | None = loop
        self._sock = sock
        self._fd = fd
        self._connected = self._extra["peername"] is not None
        self._address = address
        self.max_size = _UDP_MAX_SIZE if sock.family in (
            socket.AF_INET, socket.AF_INET6) else _OTHER_MAX_SIZE
        self._protocol: Any = protocol
        self._protocol_connected = True
        self._buffer: collections.deque[tuple[bytes, Any]] = collections.deque()
        self._buffer_size = 0
        self._conn_lost = 0
        self._closing = False
        self._paused = False
        self._reading = False
        self._writing = False
        loop.claim_fd(fd, self)
        loop.call_soon(protocol.connection_made, self)
        # Reading starts only once connection_made() has run.
        loop.call_soon(self._start_reading)
        if waiter is not None:
            loop.call_soon(_set_result_unless_cancelled, waiter)

    def __repr__(self) -> str:
        info = [type(self).__name__]
        if self._sock is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._fd}")
        if self._loop is not None and not self._loop.is_closed():
            info.append("read=polling" if self._reading else "read=idle")
            state = "polling" if self._writing else "idle"
            info.append(f"write=<{state}, bufsize={self._buffer_size}>")
        return "<{}>".format(" ".join(info))

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if self._sock is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._sock.close()

    # -- the protocol and the transport's state ------------------------------------

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol
        self._protocol_connected = True

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol  # type: ignore[no-any-return]

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stop receiving; send what is queued, then call ``connection_lost(None)``."""
        if self._closing:
            return
        self._closing = True
        self._stop_reading()
        if not self._buffer:
            self._conn_lost += 1
            self._stop_writing()
            assert self._loop is not None
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        """Close at once, dropping queued datagrams."""
        self._force_close(None)

    # -- receiving -------------------------------------------------------------------

    def is_reading(self) -> bool:
        return not self._closing and not self._paused

    def pause_reading(self) -> None:
        if not self.is_reading():
            return
        self._paused = True
        self._stop_reading()
        if self._loop is not None and self._loop.get_debug():
            logger.debug("%r pauses reading", self)

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        self._start_reading()
        if self._loop is not None and self._loop.get_debug():
            logger.debug("%r resumes reading", self)

    def _start_reading(self) -> None:
        if self.is_reading() and not self._reading and self._loop is not None:
            self._loop.watch_readable(self._fd, self._read_ready)
            self._reading = True

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            assert self._loop is not None
            self._loop.unwatch_readable(self._fd)

    def _read_ready(self) -> None:
        if self._conn_lost:
            return
        try:
            data, addr = _recvfrom(self._sock, self.max_size)  # type: ignore[arg-type]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            self._protocol.error_received(exc)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on datagram transport")
        else:
            self._protocol.datagram_received(data, addr)

    # -- sending ---------------------------------------------------------------------

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        """Send ``data`` to ``addr`` (or to the remote address given at creation)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"data argument must be a bytes-like object, not {type(data).__name__!r}"
            )
        if self._address:
            if addr not in (None, self._address):
                raise ValueError(f"Invalid address: must be None or {self._address}")
            addr = self._address
        if self._conn_lost:
            if self._conn_lost >= _LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("socket.send() raised exception.")
            self._conn_lost += 1
            return
        if not self._buffer:
            sock = self._sock
            assert sock is not None
            try:
                if self._connected:
                    _send(sock, data)
                else:
                    _sendto(sock, data, addr)
                return
            except (BlockingIOError, InterruptedError):
                self._start_writing()
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal write error on datagram transport")
                return
        # Queue an immutable copy: the caller may reuse its buffer.
        self._buffer.append((bytes(data), addr))
        self._buffer_size += len(data) + _DATAGRAM_OVERHEAD
        self._maybe_pause_protocol()

    def _start_writing(self) -> None:
        if not self._writing:
            assert self._loop is not None
            self._loop.watch_writable(self._fd, self._sendto_ready)
            self._writing = True

    def _stop_writing(self) -> None:
        if self._writing:
            self._writing = False
            assert self._loop is not None
            self._loop.unwatch_writable(self._fd)

    def _sendto_ready(self) -> None:
        buffer = self._buffer
        sock = self._sock
        assert sock is not None
        while buffer:
            data, addr = buffer[0]
            try:
                if self._connected:
                    _send(sock, data)
                else:
                    _sendto(sock, data, addr)
            except (BlockingIOError, InterruptedError):
                break  # still full: wait for the next writability
            except OSError as exc:
                # The datagram is dropped, as it would be had the first send
                # failed: a retry would most likely fail the same way.
                buffer.popleft()
                self._buffer_size -= len(data) + _DATAGRAM_OVERHEAD
                self._protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal write error on datagram transport")
                return
            buffer.popleft()
            self._buffer_size -= len(data) + _DATAGRAM_OVERHEAD
        self._maybe_resume_protocol()  # may queue more datagrams
        if not buffer:
            self._stop_writing()
            if self._closing:
                self._call_connection_lost(None)

    # -- write flow control (the marks and pause/resume calls: WriteFlowControl) -------

    def get_write_buffer_size(self) -> int:
        return self._buffer_size

    # -- closing -----------------------------------------------------------------------

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        report_fatal_error(self._loop, message, exc, self, self._protocol, isinstance(exc, OSError))
        self._force_close(exc)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        if self._buffer:
            self._buffer.clear()
            self._buffer_size = 0
            self._stop_writing()
        if not self._closing:
            self._closing = True
            self._stop_reading()
        self._conn_lost += 1
        assert self._loop is not None
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            if self._protocol_connected:
                self._protocol.connection_lost(exc)
        finally:
            loop = self._loop
            sock = self._sock
            if loop is not None:
                self._stop_reading()
                self._stop_writing()
                # Give the descriptor back before closing it: once closed, its
                # number can be reused by a socket someone else owns.
                loop.release_fd(self._fd, self)
            if sock is not None:
                sock.close()
            self._sock = None
            self._protocol = None
            self._loop = None
