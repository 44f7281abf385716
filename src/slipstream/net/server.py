"""``Server``: what ``create_server`` and ``create_unix_server`` return, and its accept loop.

A server owns its listening sockets.  While serving, each one is watched for
readability; a readable listening socket means connections are waiting, and
:meth:`Server._accept_ready` accepts up to ``backlog`` of them in one go (a
burst of connections should not cost one loop turn each: bpo-27906).  A plain
connection gets its transport right there, without a task; a TLS one gets a
task, because its handshake has to be awaited before the server can tell
whether the connection is any good.

The server also keeps the set of its live client transports, for
``wait_closed()`` (which waits for them) and, on 3.13, ``close_clients()`` and
``abort_clients()``.  It is a weak set: a transport that is garbage-collected
without being closed must not keep ``wait_closed()`` waiting forever.
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
        self._clients: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()
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

    def _attach(self, transport: asyncio.BaseTransport) -> None:
        self._clients.add(transport)

    def _detach(self, transport: asyncio.BaseTransport) -> None:
        self._clients.discard(transport)
        if not self._clients and self._sockets is None:
            self._wakeup()

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
        for transport in self._clients.copy():
            transport.close()

    def abort_clients(self) -> None:
        """Abort every client transport (buffered data is dropped)."""
        for transport in self._clients.copy():
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
            sock.listen(self._backlog)
            self._loop.watch_readable(sock.fileno(), self._accept_ready, sock)

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

    def _resume_accepting(self, sock: socket.socket) -> None:
        self._retry_timers.pop(sock, None)
        if self._serving:
            self._loop.watch_readable(sock.fileno(), self._accept_ready, sock)

    def _accept_ready(self, sock: socket.socket) -> None:
        loop = self._loop
        for _ in range(self._backlog):
            try:
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
                    ACCEPT_RETRY_DELAY, self._resume_accepting, sock
                )
                return
            if loop.get_debug():
                logger.debug("%r got a new connection from %r: %r", self, addr, conn)
            conn.setblocking(False)
            self._connection_accepted(conn, {"peername": addr})

    def _connection_accepted(self, conn: socket.socket, extra: dict[str, Any]) -> None:
        if self._ssl_context is not None:
            self._loop.create_task(self._accept_tls(conn, extra))
            return
        try:
            protocol = self._protocol_factory()
            start_transport(self._loop, conn, protocol, None, extra=extra, server=self)
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
