"""The ``sock_*`` coroutines: non-blocking socket operations awaited on the loop.

Every operation first makes the system call.  Most of the time it succeeds
(data is waiting, the send buffer has room, a connection is queued) and the
coroutine returns without ever touching the poller or creating a future.  Only
when the call would block does the operation register interest in the socket
and wait; the readiness callback then retries the call until it no longer
blocks.

Cancellation is the subtle part.  A waiting operation owns the socket's reader
(or writer) slot in the loop, and when its wait ends for any reason (a result,
an error, a cancellation) it gives the slot back: *unless* someone else took
the slot in the meantime.  That happens when a cancelled ``sock_sendall`` is
immediately followed by another one on the same socket: the new operation
registers before the old coroutine resumes, and the old one must not
unregister it.  The handle returned by ``watch_writable`` tells: replacing a
callback cancels the old handle, so a cancelled handle means "not mine any
more".  A retry callback also checks that its future is not done before making
the call, so a cancelled receive never consumes bytes nobody will see.

Who gives the slot back, and when, matters for speed.  The readiness callback
that settles the future releases the slot itself, right then: it is running,
so its handle was not cancelled, so the slot is still its own.  Every wait
here follows a call that would have blocked, and every callback retries until
the kernel says EAGAIN, so the waits are ``watch_readable_edge`` /
``watch_writable_edge``: compiled, the epoll backend keeps an edge-triggered
registration between the waits on a socket, and a wait costs no system call;
interpreted, a single ``EPOLL_CTL_MOD`` (see :mod:`slipstream.backends.epoll`).  Only a wait
that ends otherwise (cancelled) is released by the coroutine, in a ``finally``
around its ``await``.  Neither uses a done-callback on the future: that would
cost a ``call_soon`` (a handle and a queue entry) per wait, on a path that runs
once per message in a ``sock_recv`` loop.

``sock_sendfile`` uses the kernel's ``sendfile()`` the same way (as much as the
socket takes, then wait for writability) and falls back to reading the file in
the default executor when the file cannot be mapped (no descriptor, a pipe).
"""

from __future__ import annotations

import asyncio
import errno
import io
import operator
import os
import socket
import sys
from asyncio import constants
from collections.abc import Callable
from typing import IO, Any, TypeVar

from .. import backends
from ..core import CoreLoop
from .dns import resolve_address

try:
    import ssl
except ImportError:  # pragma: no cover - Python built without OpenSSL
    ssl = None  # type: ignore[assignment]

_T = TypeVar("_T")

# recv/send as compiled system calls where they were built (backends/socket_calls.py).
_recv = backends.recv
_recv_or_none = backends.recv_or_none
_recv_into = backends.recv_into
_send = backends.send
_wait_after_short_read = backends.wait_after_short_read

_INET_FAMILIES = frozenset(
    (socket.AF_INET, socket.AF_INET6) if hasattr(socket, "AF_INET6") else (socket.AF_INET,)
)


# A plain socket.socket is neither a TLS socket nor (outside debug mode)
# checked for blocking: the hottest operations skip _check_socket for it.
_PLAIN_SOCKET = socket.socket


def _check_socket(sock: socket.socket, debug: bool) -> None:
    # asyncio refuses TLS sockets always (their recv/send go through OpenSSL,
    # not straight to the kernel) but blocking sockets only in debug mode;
    # outside it, a blocking socket works and simply blocks the loop.
    if ssl is not None and isinstance(sock, ssl.SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")
    if debug and sock.gettimeout() != 0:
        raise ValueError("the socket must be non-blocking")


# The readiness callbacks below are called as ``callback(fut, release, fd,
# ...)``, ``release`` being the loop's ``unwatch_readable`` or
# ``unwatch_writable``.  A callback that settles ``fut`` releases the watch
# first, in the same turn as the event: see "Cancellation" above for why it is
# always still ours to release then, and backends/epoll.py for why releasing
# before the next poll makes the next wait cheaper.


def _retry(
    fut: asyncio.Future[_T],
    release: Callable[[int], object],
    fd: int,
    sock: socket.socket,
    call: Callable[[socket.socket], _T],
) -> None:
    """Readiness callback: try ``call(sock)`` again; settle ``fut`` unless it would block."""
    if fut.done():
        # Cancelled (or settled) since the event was queued: making the call
        # now would consume data or a connection that nobody will receive.
        return
    try:
        result = call(sock)
    except (BlockingIOError, InterruptedError):
        return  # a spurious wake-up: stay registered
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        release(fd)
        fut.set_exception(exc)
    else:
        release(fd)
        fut.set_result(result)


def _recv_ready(
    fut: asyncio.Future[bytes],
    release: Callable[[int], object],
    fd: int,
    sock: socket.socket,
    nbytes: int,
    drained: set[int],
) -> None:
    """``_retry`` for ``sock.recv(nbytes)``, the most frequent wait, without the indirection.

    Also keeps ``drained`` (see ``SocketOperations.sock_recv``): a read that
    did not fill ``nbytes`` emptied the socket, one that did may have left more.
    The next receive on a drained socket waits without trying, which an
    edge-triggered registration allows only because data that arrives after
    this read is reported anew (``backends/epoll.py``).
    """
    if fut.done():
        return
    try:
        data = _recv(sock, nbytes)
    except (BlockingIOError, InterruptedError):
        return
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        release(fd)
        drained.discard(fd)  # the next receive asks the kernel, and fails the same way
        fut.set_exception(exc)
    else:
        release(fd)
        if 0 < len(data) < nbytes and _wait_after_short_read(sock):
            drained.add(fd)
        else:
            # Full (more may be queued), the end of the stream, or a socket
            # whose short read says nothing of what is left (see
            # backends.wait_after_short_read): the next receive tries first.
            drained.discard(fd)
        fut.set_result(data)


def _accept(sock: socket.socket) -> tuple[socket.socket, Any]:
    conn, address = sock.accept()
    conn.setblocking(False)
    return conn, address


def _send_ready(
    fut: asyncio.Future[None],
    release: Callable[[int], object],
    fd: int,
    sock: socket.socket,
    rest: list[memoryview],
) -> None:
    """Writability callback of ``sock_sendall``: send more of ``rest[0]``; settle when done."""
    if fut.done():
        return
    try:
        sent = _send(sock, rest[0])
    except (BlockingIOError, InterruptedError):
        return
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        release(fd)
        fut.set_exception(exc)
        return
    # The progress is kept here, not in the coroutine: whatever the kernel
    # accepted is gone from ``rest``, so a retry never sends a byte twice.
    remaining = rest[0] = rest[0][sent:]
    if not remaining:
        release(fd)
        fut.set_result(None)


def _connect_finished(
    fut: asyncio.Future[None],
    release: Callable[[int], object],
    fd: int,
    sock: socket.socket,
    address: Any,
) -> None:
    """Writability of a connecting socket: the connection succeeded or failed."""
    if fut.done():
        return
    try:
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err != 0:
            raise OSError(err, f"Connect call failed {address}")
    except (BlockingIOError, InterruptedError):
        return  # still in progress
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        release(fd)
        fut.set_exception(exc)
    else:
        release(fd)
        fut.set_result(None)


def _check_sendfile_arguments(
    sock: socket.socket, file: IO[bytes], offset: int, count: int | None
) -> None:
    if "b" not in getattr(file, "mode", "b"):
        raise ValueError("file should be opened in binary mode")
    if sock.type != socket.SOCK_STREAM:
        raise ValueError("only SOCK_STREAM type sockets are supported")
    if count is not None:
        if not isinstance(count, int):
            raise TypeError(f"count must be a positive integer (got {count!r})")
        if count <= 0:
            raise ValueError(f"count must be a positive integer (got {count!r})")
    if not isinstance(offset, int):
        raise TypeError(f"offset must be a non-negative integer (got {offset!r})")
    if offset < 0:
        raise ValueError(f"offset must be a non-negative integer (got {offset!r})")


# One sendfile() call is capped so that the size fits a C ssize_t on 32-bit
# systems too; the kernel sends less than that per call anyway.
_SENDFILE_MAX_BLOCK = sys.maxsize // 2 + 1


class _FileSender:
    """A ``sock_sendfile`` in progress: ``os.sendfile`` until done or the socket is full."""

    __slots__ = ("blocksize", "calls", "count", "fd", "fileno", "fut", "offset", "sent", "start")

    def __init__(
        self,
        fut: asyncio.Future[int],
        fd: int,
        fileno: int,
        offset: int,
        count: int | None,
        blocksize: int,
    ) -> None:
        self.fut = fut
        self.fd = fd
        self.fileno = fileno
        self.start = offset
        self.offset = offset
        self.count = count
        self.blocksize = min(blocksize, _SENDFILE_MAX_BLOCK)
        self.sent = 0
        self.calls = 0

    def on_writable(self) -> None:
        if not self.fut.done():
            self.send_some()

    def send_some(self) -> None:
        """Send until the socket is full (then return) or until done (then settle ``fut``)."""
        fut = self.fut
        while True:
            blocksize = self.blocksize
            if self.count:
                blocksize = min(blocksize, self.count - self.sent)
                if blocksize <= 0:
                    self.finish()
                    fut.set_result(self.sent)
                    return
            self.calls += 1
            try:
                sent = os.sendfile(self.fd, self.fileno, self.offset, blocksize)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.finish()
                fut.set_exception(self.explain(exc))
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self.finish()
                fut.set_exception(exc)
                return
            if sent == 0:  # end of file
                self.finish()
                fut.set_result(self.sent)
                return
            self.offset += sent
            self.sent += sent

    def explain(self, exc: OSError) -> BaseException:
        if self.sent == 0:
            # Most often the file is not something sendfile() can map (a pipe,
            # a socket): the caller falls back to reading and sending.
            return asyncio.SendfileNotAvailableError("os.sendfile call failed")
        if self.calls > 1 and exc.errno == errno.ENOTCONN and type(exc) is not ConnectionError:
            # The peer went away mid-transfer: say so the same way on every
            # POSIX system, as asyncio does.
            error = ConnectionError("socket is not connected", errno.ENOTCONN)
            error.__cause__ = exc
            return error
        return exc

    def finish(self) -> None:
        # Leave the file position after the last byte sent, like a write would.
        if self.sent > 0:
            os.lseek(self.fileno, self.start + self.sent, os.SEEK_SET)


class SocketOperations(CoreLoop):
    """``sock_recv``, ``sock_sendall``, ``sock_connect``, ``sock_accept`` and friends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Descriptors whose last sock_recv() emptied the socket (see sock_recv).
        self._sock_recv_drained: set[int] = set()

    # -- waiting -----------------------------------------------------------------

    async def _sockop_wait(
        self,
        watch: Callable[..., Any],
        release: Callable[[int], object],
        sock: socket.socket,
        callback: Callable[..., object],
        *args: Any,
    ) -> Any:
        """Wait until ``callback(fut, release, fd, *args)`` settles ``fut``.

        ``watch``/``release`` are the loop's ``watch_readable_edge``/``unwatch_readable``
        or ``watch_writable_edge``/``unwatch_writable``: which readiness runs the
        callback.  Every caller has just tried the operation and been told it
        would block, and every callback retries it and keeps waiting while it
        would: the promise of ``watch_readable_edge``.
        """
        fut = self.create_future()
        fd = sock.fileno()
        self.check_fd_unowned(fd)
        handle = watch(fd, sock, callback, fut, release, fd, *args)
        try:
            return await fut
        finally:
            # The callback released the watch if it settled the future.  If
            # the wait ended otherwise (cancelled), give the slot back, unless
            # another operation has taken it since (that cancelled our handle).
            if not handle.cancelled():
                release(fd)
            del fut  # an error's traceback holds this frame: no cycle through fut

    # -- receiving -----------------------------------------------------------------

    async def sock_recv(self, sock: socket.socket, nbytes: int) -> bytes:
        """Receive up to ``nbytes`` bytes from ``sock`` (b"" at end of stream)."""
        if type(sock) is not _PLAIN_SOCKET or self.get_debug():  # the checks' fast path
            _check_socket(sock, self.get_debug())
        fd = sock.fileno()
        # Try the call first, unless the last receive on this descriptor
        # emptied the socket.  A recv() that would block costs ~1.6 µs in
        # Python (the BlockingIOError is built, with its message, and caught)
        # against ~0.3 µs for one that returns data; in a request/response
        # loop the receive after a reply nearly always finds nothing, so that
        # failed try was the single largest cost of a round trip.  A socket
        # whose last read was partial waits for readability straight away; a
        # full read (more may be queued) or a number reused by another socket
        # costs at worst one loop turn, and the order of bytes never changes.
        # An unusual nbytes (0, negative, not an int) always makes the call,
        # so it answers or fails at once, exactly as recv() would.
        drained = self._sock_recv_drained
        if fd not in drained or type(nbytes) is not int or nbytes <= 0:
            try:
                # None, not an exception, when the call would block: the
                # compiled call then builds no BlockingIOError, whose cost
                # (~3,500 instructions) a try after a full read still paid,
                # once per message for one read 64 KiB at a time.  (Marking
                # the socket drained after a short read here instead would
                # have spared the call, but made a receive wait a loop turn
                # for data that arrived since, where asyncio's returns at
                # once: the stress suite's cancellation fuzz tells them apart.)
                data = _recv_or_none(sock, nbytes)
            except InterruptedError:
                data = None
            if data is not None:
                return data
            drained.add(fd)
        # _sockop_wait, inlined: this wait happens once per message in a
        # request/response loop, and a coroutine frame less is measurable.
        fut: asyncio.Future[bytes] = self.create_future()
        self.check_fd_unowned(fd)
        handle = self.watch_readable_edge(
            fd, sock, _recv_ready, fut, self.unwatch_readable, fd, sock, nbytes, drained
        )
        try:
            return await fut
        finally:
            if not handle.cancelled():
                self.unwatch_readable(fd)
                # The wait may have been woken and then cancelled before its
                # callback read: the next receive tries the call first.
                drained.discard(fd)
            del fut

    async def sock_recv_into(self, sock: socket.socket, buf: Any) -> int:
        """Receive into the writable buffer ``buf``; return the number of bytes written."""
        _check_socket(sock, self.get_debug())
        try:
            return _recv_into(sock, buf)
        except (BlockingIOError, InterruptedError):
            pass
        count: int = await self._sockop_wait(
            self.watch_readable_edge,
            self.unwatch_readable,
            sock,
            _retry,
            sock,
            operator.methodcaller("recv_into", buf),
        )
        return count

    async def sock_recvfrom(self, sock: socket.socket, bufsize: int) -> tuple[bytes, Any]:
        """Receive a datagram of up to ``bufsize`` bytes: ``(data, address)``."""
        _check_socket(sock, self.get_debug())
        try:
            return sock.recvfrom(bufsize)
        except (BlockingIOError, InterruptedError):
            pass
        result: tuple[bytes, Any] = await self._sockop_wait(
            self.watch_readable_edge,
            self.unwatch_readable,
            sock,
            _retry,
            sock,
            operator.methodcaller("recvfrom", bufsize),
        )
        return result

    async def sock_recvfrom_into(
        self, sock: socket.socket, buf: Any, nbytes: int = 0
    ) -> tuple[int, Any]:
        """Receive a datagram into ``buf`` (at most ``nbytes``, default all of it)."""
        _check_socket(sock, self.get_debug())
        if not nbytes:
            nbytes = len(buf)
        try:
            return sock.recvfrom_into(buf, nbytes)
        except (BlockingIOError, InterruptedError):
            pass
        result: tuple[int, Any] = await self._sockop_wait(
            self.watch_readable_edge,
            self.unwatch_readable,
            sock,
            _retry,
            sock,
            operator.methodcaller("recvfrom_into", buf, nbytes),
        )
        return result

    # -- sending -------------------------------------------------------------------

    async def sock_sendall(self, sock: socket.socket, data: Any) -> None:
        """Send all of ``data``; on error there is no telling how much was sent."""
        if type(sock) is not _PLAIN_SOCKET or self.get_debug():  # the checks' fast path
            _check_socket(sock, self.get_debug())
        try:
            sent = _send(sock, data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        if sent == len(data) and (type(data) is bytes or isinstance(data, (bytes, bytearray))):
            return  # the common case: everything fitted, no view needed
        view = memoryview(data)
        if view.itemsize != 1 or view.ndim != 1:
            view = view.cast("B")  # send() counts bytes, len() may count items
        if sent == len(view):
            return
        await self._sockop_wait(
            self.watch_writable_edge, self.unwatch_writable, sock, _send_ready, sock, [view[sent:]]
        )

    async def sock_sendto(self, sock: socket.socket, data: Any, address: Any) -> int:
        """Send the datagram ``data`` to ``address``; return the number of bytes sent."""
        _check_socket(sock, self.get_debug())
        try:
            return sock.sendto(data, address)
        except (BlockingIOError, InterruptedError):
            pass
        # The method is looked up on every attempt (not bound once), as asyncio
        # does: a wrapper or a test may replace ``sock.sendto`` while we wait.
        sent: int = await self._sockop_wait(
            self.watch_writable_edge,
            self.unwatch_writable,
            sock,
            _retry,
            sock,
            operator.methodcaller("sendto", data, 0, address),
        )
        return sent

    # -- connections ---------------------------------------------------------------

    async def sock_connect(self, sock: socket.socket, address: Any) -> None:
        """Connect ``sock`` to ``address``, resolving a host name first if needed."""
        _check_socket(sock, self.get_debug())
        if sock.family in _INET_FAMILIES:
            resolved = await resolve_address(
                self, address, family=sock.family, type=sock.type, proto=sock.proto
            )
            address = resolved[0][4]
        try:
            sock.connect(address)
            return
        except (BlockingIOError, InterruptedError):
            # In progress (EINPROGRESS; or EINTR, after which the connection
            # also goes on in the background): writability says it is done.
            pass
        await self._sockop_wait(
            self.watch_writable_edge, self.unwatch_writable, sock, _connect_finished, sock, address
        )

    async def sock_accept(self, sock: socket.socket) -> tuple[socket.socket, Any]:
        """Accept a connection: ``(conn, address)``, with ``conn`` non-blocking."""
        _check_socket(sock, self.get_debug())
        try:
            return _accept(sock)
        except (BlockingIOError, InterruptedError):
            pass
        result: tuple[socket.socket, Any] = await self._sockop_wait(
            self.watch_readable_edge, self.unwatch_readable, sock, _retry, sock, _accept
        )
        return result

    # -- files -------------------------------------------------------------------------

    async def sock_sendfile(
        self,
        sock: socket.socket,
        file: IO[bytes],
        offset: int = 0,
        count: int | None = None,
        *,
        fallback: bool | None = True,
    ) -> int:
        """Send ``file`` (from ``offset``, ``count`` bytes or to its end) over ``sock``.

        The kernel's ``sendfile()`` is used where it can be; otherwise, if
        ``fallback`` is true, the file is read in the default executor and sent.
        Returns the number of bytes sent; the file position ends after them.
        """
        if self.get_debug() and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        _check_socket(sock, False)  # the debug check above comes first, as in asyncio
        _check_sendfile_arguments(sock, file, offset, count)
        try:
            return await self._sockop_sendfile_native(sock, file, offset, count)
        except asyncio.SendfileNotAvailableError:
            if not fallback:
                raise
        return await self._sockop_sendfile_fallback(sock, file, offset, count)

    async def _sockop_sendfile_native(
        self, sock: socket.socket, file: IO[bytes], offset: int, count: int | None
    ) -> int:
        if not hasattr(os, "sendfile"):
            raise asyncio.SendfileNotAvailableError("os.sendfile() is not available")
        try:
            fileno = file.fileno()
            size = os.fstat(fileno).st_size
        except (AttributeError, io.UnsupportedOperation, OSError):
            raise asyncio.SendfileNotAvailableError("not a regular file") from None
        blocksize = count if count else size
        if not blocksize:
            return 0  # an empty file
        fd = sock.fileno()
        sender = _FileSender(self.create_future(), fd, fileno, offset, count, blocksize)
        sender.send_some()
        fut = sender.fut
        if fut.done():
            return fut.result()
        self.check_fd_unowned(fd)
        handle = self.watch_writable(fd, sender.on_writable)
        try:
            return await fut
        finally:
            if not handle.cancelled():
                self.unwatch_writable(fd)
            if fut.cancelled():
                sender.finish()
            del fut  # an error's traceback holds this frame: no cycle through fut

    async def _sockop_sendfile_fallback(
        self, sock: socket.socket, file: IO[bytes], offset: int, count: int | None
    ) -> int:
        if offset:
            file.seek(offset)
        # Read at call time: tests (and tuning) change asyncio's constant.
        chunk = constants.SENDFILE_FALLBACK_READBUFFER_SIZE
        if count:
            chunk = min(count, chunk)
        buffer = memoryview(bytearray(chunk))
        total = 0
        try:
            while True:
                if count:
                    chunk = min(count - total, chunk)
                    if chunk <= 0:
                        break
                read = await self.run_in_executor(
                    None, file.readinto, buffer[:chunk]  # type: ignore[attr-defined]
                )
                if not read:
                    break  # end of file
                await self.sock_sendall(sock, buffer[:read])
                total += read
            return total
        finally:
            if total > 0 and hasattr(file, "seek"):
                file.seek(offset + total)
