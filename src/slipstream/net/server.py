"""``Server``: what ``create_server`` and ``create_unix_server`` return, and its accept loop.

A server owns its listening sockets.  While serving, each one is watched for
readability; a readable listening socket means connections are waiting, and
:meth:`Server._accept_ready` accepts up to ``backlog`` of them in one go (a
burst of connections should not cost one loop turn each: bpo-27906).  A plain
connection gets its transport right there, without a task; a TLS one gets a
task, because its handshake has to be awaited before the server can tell
whether the connection is any good.

The server also keeps its live client transports, for ``wait_closed()``
(which waits for them) and, on 3.13, ``close_clients()`` and
``abort_clients()``.  It holds them weakly: a transport that is
garbage-collected without being closed must not keep ``wait_closed()`` waiting
forever.  Not in a ``WeakSet``, though: each entry of one is a weak reference
with a callback of its own (~130 bytes per connection, measured).  The map here
goes from the transport's descriptor number to a plain ``weakref.ref``, which
Python shares with every other plain reference to the same object -- the
loop's ``claim_fd`` already made one -- so an entry costs a dict slot.  The
transport reports its own end (``_detach``), from ``connection_lost`` or, if it
is dropped unclosed, from ``__del__``; there the reference may already be dead,
which is why the key is the number and not the reference.

What one accepted connection costs the accept loop, besides the transport:
``accept()`` and the switch to non-blocking mode (two system calls; Python's
``accept()`` cannot ask for a non-blocking socket).  Python's
``socket.accept()`` also converts the listening socket's family, type and
protocol to enums for every connection; they are read once per listening
socket here instead.  And ``TCP_NODELAY`` (see ``set_nodelay``) is set on the
listening socket, which Linux (and the BSDs) copy to every socket they accept:
accepted sockets are checked until one has it (see ``_MAX_QUEUED_BEFORE``), and
only where the option does not come along is it set on each connection, one
more system call apiece.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import sys
import weakref
from asyncio.trsock import TransportSocket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..core.errors import logger
from ..transports.socket_stream import SocketTransport, is_tcp_stream, set_nodelay
from .connection import ProtocolFactory, start_transport
from .sockopts import remove_stale_unix_socket, set_reuse_port

if TYPE_CHECKING:
    import ssl as ssl_module

    from ..core import CoreLoop

__all__ = [
    "Server",
    "bind_error_text",
    "open_tcp_listeners",
    "open_unix_listener",
    "set_reuse_port",
    "unix_socket_inode",
]

# After accept() fails for lack of descriptors or memory, wait this long before
# trying again: the listening socket stays readable, so retrying at once spins.
ACCEPT_RETRY_DELAY = 1.0

_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

# Until 3.12.1, wait_closed() returned at once on a closed server, even with
# clients still connected (3.12.0 got it wrong the other way).
_WAIT_FOR_CLIENTS = sys.version_info >= (3, 12, 1)

# What each accepted socket of a listener still needs for TCP_NODELAY.
_NODELAY_NONE = 0  # nothing: not TCP, or the listener passes it on
_NODELAY_CHECK = 1  # look: the listener may pass it on
_NODELAY_EACH = 2  # set it on every one

# The kernel makes an accepted socket when the handshake completes, copying the
# listener's options as they are then: connections already queued when the
# listener got TCP_NODELAY (a socket that was listening before it was given to
# create_server) come without it.  The queue is first in, first out and at most
# this long (Linux's default somaxconn), so once one arrives with the option
# every later one has it too; and after more than this many without it, the
# platform does not copy it at all.
_MAX_QUEUED_BEFORE = 4096

# Linux tells how many connections wait in a listening TCP socket's accept
# queue: TCP_INFO's tcpi_unacked field (a native 32-bit integer at offset 24)
# holds the queue's length while the socket listens.
_TCP_INFO = getattr(socket, "TCP_INFO", None) if sys.platform.startswith("linux") else None


class _Listener:
    """A listening socket with what its accept loop needs to know of it, read once."""

    __slots__ = ("can_count", "family", "kind", "nodelay", "plain", "proto", "sock", "unproven")

    def __init__(self, sock: socket.socket, backlog: int) -> None:
        self.sock = sock
        # A subclass may override accept(): then it is called, as asyncio does.
        self.plain = type(sock) is socket.socket
        self.family = sock.family
        self.kind = sock.type
        self.proto = sock.proto
        self.nodelay = _NODELAY_NONE
        self.unproven = max(backlog, _MAX_QUEUED_BEFORE) + 1
        tcp = is_tcp_stream(sock)
        self.can_count = tcp and _TCP_INFO is not None
        if tcp:
            self.nodelay = _NODELAY_CHECK if set_nodelay(sock) else _NODELAY_EACH

    def queued(self) -> int:
        """How many connections wait to be accepted (0: none, or it cannot be told)."""
        try:
            info = self.sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 32)  # type: ignore[arg-type]
        except OSError:
            self.can_count = False
            return 0
        return int.from_bytes(info[24:28], sys.byteorder)

    def accepted_nodelay(self, conn: socket.socket) -> None:
        """Make sure the accepted TCP socket ``conn`` has TCP_NODELAY."""
        if self.nodelay == _NODELAY_CHECK:
            try:
                passed_on = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            except OSError:
                return  # e.g. the connection was already reset
            if passed_on:
                self.nodelay = _NODELAY_NONE  # and so will every later one
                return
            self.unproven -= 1
            if not self.unproven:
                self.nodelay = _NODELAY_EACH
        set_nodelay(conn)


class Server(asyncio.AbstractServer):
    """A listening TCP or Unix server (``asyncio.Server``'s public API)."""

    def __init__(
        self,
        loop: CoreLoop,
        sockets: list[socket.socket],
        protocol_factory: ProtocolFactory,
        ssl_context: ssl_module.SSLContext | None,
        backlog: int,
        ssl_handshake_timeout: float | None,
        ssl_shutdown_timeout: float | None = None,
        unix_inodes: dict[socket.socket, int] | None = None,
    ) -> None:
        self._loop = loop
        self._sockets: list[socket.socket] | None = sockets
        # Descriptor number -> its transport (see the module's docstring).
        self._clients: dict[int, weakref.ref[asyncio.BaseTransport]] = {}
        self._waiters: list[asyncio.Future[None]] | None = []
        self._protocol_factory = protocol_factory
        self._backlog = backlog
        self._ssl_context = ssl_context
        self._ssl_handshake_timeout = ssl_handshake_timeout
        self._ssl_shutdown_timeout = ssl_shutdown_timeout
        self._serving = False
        self._serving_forever_fut: asyncio.Future[None] | None = None
        # Unix socket -> inode of the file it was bound to, for cleanup on close.
        self._unix_inodes = unix_inodes or {}
        self._retry_timers: dict[socket.socket, asyncio.TimerHandle] = {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} sockets={self.sockets!r}>"

    # -- what the transports report ------------------------------------------------------

    def _attach(self, fd: int, transport: asyncio.BaseTransport) -> None:
        self._clients[fd] = weakref.ref(transport)

    def _detach(self, fd: int, transport: asyncio.BaseTransport) -> None:
        ref = self._clients.get(fd)
        if ref is not None:
            # Dead: the transport is being collected unclosed (a cyclic
            # collection clears weak references before __del__ runs).
            owner = ref()
            if owner is None or owner is transport:
                del self._clients[fd]
        if not self._clients and self._sockets is None:
            self._wakeup()

    def _live_clients(self) -> list[asyncio.BaseTransport]:
        return [
            transport for ref in list(self._clients.values()) if (transport := ref()) is not None
        ]

    def _wakeup(self) -> None:
        waiters = self._waiters
        self._waiters = None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    # -- public API ------------------------------------------------------------------------

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    @property
    def sockets(self) -> tuple[TransportSocket, ...]:
        """The listening sockets, wrapped so they cannot be closed behind the server's back."""
        if self._sockets is None:
            return ()
        return tuple(TransportSocket(sock) for sock in self._sockets)

    async def start_serving(self) -> None:
        self._start_serving()
        # One loop turn, so that the watches are in place when this returns
        # (asyncio's behaviour, which tests rely on).
        await asyncio.sleep(0)

    async def serve_forever(self) -> None:
        if self._serving_forever_fut is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        if self._sockets is None:
            raise RuntimeError(f"server {self!r} is closed")
        self._start_serving()
        self._serving_forever_fut = self._loop.create_future()
        try:
            await self._serving_forever_fut
        except asyncio.CancelledError:
            try:
                self.close()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serving_forever_fut = None

    def close(self) -> None:
        """Stop listening and close the listening sockets; clients stay connected."""
        sockets = self._sockets
        if sockets is None:
            return
        self._sockets = None
        for sock in sockets:
            self._stop_listening(sock)
        self._serving = False
        if self._serving_forever_fut is not None and not self._serving_forever_fut.done():
            self._serving_forever_fut.cancel()
            self._serving_forever_fut = None
        if not self._clients:
            self._wakeup()

    def close_clients(self) -> None:
        """Close every client transport (they flush their buffers first)."""
        for transport in self._live_clients():
            transport.close()

    def abort_clients(self) -> None:
        """Abort every client transport (buffered data is dropped)."""
        for transport in self._live_clients():
            transport.abort()  # type: ignore[attr-defined]

    async def wait_closed(self) -> None:
        """Wait until the server is closed and (3.12.1+) all its clients are gone."""
        waiters = self._waiters
        if waiters is None or (not _WAIT_FOR_CLIENTS and self._sockets is None):
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        waiters.append(waiter)
        await waiter

    # -- listening and accepting -----------------------------------------------------------

    def _start_serving(self) -> None:
        if self._serving or self._sockets is None:
            return
        self._serving = True
        for sock in self._sockets:
            # Before listen(): connections are then made with TCP_NODELAY.
            listener = _Listener(sock, self._backlog)
            sock.listen(self._backlog)
            self._loop.watch_readable(sock.fileno(), self._accept_ready, listener)

    def _stop_listening(self, sock: socket.socket) -> None:
        timer = self._retry_timers.pop(sock, None)
        if timer is not None:
            timer.cancel()
        inode = self._unix_inodes.pop(sock, None)
        path = sock.getsockname() if inode is not None else None
        if self._serving:
            self._loop.unwatch_readable(sock.fileno())
        sock.close()
        if path is not None and inode is not None:
            _remove_socket_file(path, inode)

    def _resume_accepting(self, listener: _Listener) -> None:
        self._retry_timers.pop(listener.sock, None)
        if self._serving:
            self._loop.watch_readable(listener.sock.fileno(), self._accept_ready, listener)

    def _accept_ready(self, listener: _Listener) -> None:
        loop = self._loop
        sock = listener.sock
        count = self._backlog
        if listener.can_count:
            # Accept exactly what is queued: the accept() that would find the
            # queue empty costs more than asking (~4.8 µs with its exception,
            # against ~0.9), and when connections come one at a time, as they
            # mostly do, it would come once per connection.  Whatever arrives
            # meanwhile keeps the socket readable for the next poll.  (Zero
            # means it could not be told: accept until the queue is empty.)
            queued = listener.queued()
            if 0 < queued < count:
                count = queued
        for _ in range(count):
            try:
                if listener.plain:
                    # What socket.accept() does, minus its per-call enum
                    # conversions (see the module's docstring).
                    fd, addr = sock._accept()  # type: ignore[attr-defined]
                    conn = None
                else:
                    conn, addr = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return  # accepted everything that was waiting
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:
                    raise  # the loop reports it; the server keeps listening
                # Linux keeps the listening socket readable while accept()
                # fails for lack of resources: stop watching it for a while
                # rather than spin.
                loop.call_exception_handler({
                    "message": "socket.accept() out of system resource",
                    "exception": exc,
                    "socket": TransportSocket(sock),
                })
                loop.unwatch_readable(sock.fileno())
                self._retry_timers[sock] = loop.call_later(
                    ACCEPT_RETRY_DELAY, self._resume_accepting, listener
                )
                return
            if conn is None:
                try:
                    conn = socket.socket(listener.family, listener.kind, listener.proto, fd)
                except BaseException:
                    os.close(fd)
                    raise
            if loop.get_debug():
                logger.debug("%r got a new connection from %r: %r", self, addr, conn)
            conn.setblocking(False)
            if listener.nodelay:
                listener.accepted_nodelay(conn)
            self._connection_accepted(conn, addr)

    def _connection_accepted(self, conn: socket.socket, addr: Any) -> None:
        if self._ssl_context is not None:
            self._loop.create_task(self._accept_tls(conn, {"peername": addr}))
            return
        try:
            protocol = self._protocol_factory()
            # TCP_NODELAY is already seen to (_Listener.accepted_nodelay).
            SocketTransport(
                self._loop, conn, protocol, None, None, self, peername=addr, nodelay=False
            )
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            conn.close()
            self._report_failed_connection(exc)

    async def _accept_tls(self, conn: socket.socket, extra: dict[str, Any]) -> None:
        protocol = transport = None
        try:
            protocol = self._protocol_factory()
            waiter: asyncio.Future[None] = self._loop.create_future()
            transport = start_transport(
                self._loop,
                conn,
                protocol,
                waiter,
                sslcontext=self._ssl_context,
                use_tls=True,
                server_side=True,
                ssl_handshake_timeout=self._ssl_handshake_timeout,
                ssl_shutdown_timeout=self._ssl_shutdown_timeout,
                extra=extra,
                server=self,
            )
            try:
                await waiter
            except BaseException:
                transport.close()
                # Drop the future: its exception can keep the TLS protocol
                # alive in a reference cycle (gh-109534).
                del waiter
                raise
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            if transport is None:
                conn.close()
            self._report_failed_connection(exc, protocol, transport)

    def _report_failed_connection(
        self, exc: BaseException, protocol: object = None, transport: object = None
    ) -> None:
        # A failed incoming connection has nobody to tell; like asyncio, only
        # say so in debug mode (a port scanner should not flood the log).
        if not self._loop.get_debug():
            return
        context: dict[str, Any] = {
            "message": "Error on transport creation for incoming connection",
            "exception": exc,
        }
        if protocol is not None:
            context["protocol"] = protocol
        if transport is not None:
            context["transport"] = transport
        self._loop.call_exception_handler(context)


def _remove_socket_file(path: str | bytes, inode: int) -> None:
    # Only if it is still the file we bound: someone may have replaced it.
    try:
        if os.stat(path).st_ino == inode:
            os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        logger.error("Unable to clean up listening UNIX socket %r: %r", path, err)


# -- listening sockets -------------------------------------------------------------------------

# 3.13 quotes the whole OSError in bind errors; earlier versions only its strerror.
if sys.version_info >= (3, 13):

    def bind_error_text(err: OSError) -> str:
        """How asyncio spells a bind error inside its own message."""
        return str(err).lower()

else:

    def bind_error_text(err: OSError) -> str:
        """How asyncio spells a bind error inside its own message."""
        return (err.strerror or str(err)).lower()


# 3.13 skips an address whose family the host has disabled (bpo-30945).
_SKIP_UNAVAILABLE_ADDRESSES = sys.version_info >= (3, 13)


def open_tcp_listeners(
    infos: Sequence[Any],
    *,
    reuse_address: bool,
    reuse_port: bool,
    keep_alive: bool,
    debug: bool,
) -> list[socket.socket]:
    """One bound (not yet listening) socket per distinct address of ``infos``.

    An IPv6 socket is made IPv6-only: Linux would otherwise let it take the
    IPv4 port too, and the IPv4 socket bound next would fail with EADDRINUSE.
    On 3.13, an address whose family the host has disabled (EADDRNOTAVAIL) is
    skipped instead of failing the whole server (bpo-30945).
    """
    sockets: list[socket.socket] = []
    completed = False
    try:
        for family, kind, proto, _, address in infos:
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:
                # A family/type/protocol combination this host cannot do.
                if debug:
                    logger.warning(
                        "create_server() failed to create socket.socket(%r, %r, %r)",
                        family, kind, proto, exc_info=True,
                    )
                continue
            sockets.append(sock)
            if reuse_address:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, True)
            if reuse_port:
                set_reuse_port(sock)
            if keep_alive:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, True)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, True)
            try:
                sock.bind(address)
            except OSError as err:
                message = (
                    f"error while attempting to bind on address {address!r}: "
                    f"{bind_error_text(err)}"
                )
                if _SKIP_UNAVAILABLE_ADDRESSES and err.errno == errno.EADDRNOTAVAIL:
                    sockets.pop()
                    sock.close()
                    if debug:
                        logger.warning(message)
                    continue
                raise OSError(err.errno, message) from None
        if not sockets:
            raise OSError(
                f"could not bind on any address out of {[info[4] for info in infos]!r}"
            )
        completed = True
    finally:
        if not completed:
            for sock in sockets:
                sock.close()
    return sockets


def open_unix_listener(path: str | bytes) -> socket.socket:
    """A Unix stream socket bound to ``path``, replacing a stale socket file there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    remove_stale_unix_socket(path)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise OSError(errno.EADDRINUSE, f"Address {path!r} is already in use") from None
        raise
    except BaseException:
        sock.close()
        raise
    return sock


def unix_socket_inode(sock: socket.socket) -> int | None:
    """The inode of the file ``sock`` is bound to (None: abstract, unbound or gone)."""
    path = sock.getsockname()
    if not path or path[0] in (0, "\x00"):
        return None
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None
