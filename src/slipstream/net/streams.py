"""Stream endpoints: TCP and Unix connections and servers.

The loop methods here check their arguments (with asyncio's exceptions and
messages, which code in the wild matches on), resolve and connect or bind, and
hand the connected socket to :mod:`slipstream.net.connection`, which starts the
transport.  Connecting to several addresses — in turn, or raced with Happy
Eyeballs — is planned by :class:`~slipstream.net.happy_eyeballs.ConnectPlanner`;
the driver here only runs the attempts it asks for.

Name resolution goes through ``self.getaddrinfo`` (an instance attribute
lookup, so a test or library that replaces it is honoured) and connecting
through ``self.sock_connect``, both public loop methods.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
import os
import socket
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from ..core import CoreLoop
from ..core.errors import logger
from .connection import ProtocolFactory, check_not_ssl_socket, open_transport
from .dns import resolve_address
from .happy_eyeballs import ConnectPlanner, interleave_by_family
from .server import (
    Server,
    bind_error_text,
    open_tcp_listeners,
    open_unix_listener,
    unix_socket_inode,
)

AddrInfo = tuple[int, int, int, str, Any]
_REUSE_ADDRESS_DEFAULT = os.name == "posix" and sys.platform != "cygwin"
_HAS_UNIX_CLEANUP = sys.version_info >= (3, 13)


def _check_ssl_arguments(
    ssl: Any, server_hostname: Any, handshake_timeout: Any, shutdown_timeout: Any
) -> None:
    if server_hostname is not None and not ssl:
        raise ValueError("server_hostname is only meaningful with ssl")
    _check_ssl_timeouts(ssl, handshake_timeout, shutdown_timeout)


def _check_ssl_timeouts(ssl: Any, handshake_timeout: Any, shutdown_timeout: Any) -> None:
    if handshake_timeout is not None and not ssl:
        raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
    if shutdown_timeout is not None and not ssl:
        raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")


def _combined_error(errors: list[OSError], all_errors: bool) -> BaseException:
    """The one exception create_connection raises when every attempt failed."""
    if all_errors:
        return ExceptionGroup("create_connection failed", errors)
    if len(errors) == 1:
        return errors[0]
    first = str(errors[0])
    if all(str(exc) == first for exc in errors):
        return errors[0]
    return OSError("Multiple exceptions: {}".format(", ".join(str(exc) for exc in errors)))


class StreamEndpoints(CoreLoop):
    """``create_connection``, ``create_server``, Unix variants, ``connect_accepted_socket``."""

    # -- TCP clients -----------------------------------------------------------------------

    async def create_connection(  # type: ignore[override]
        self,
        protocol_factory: ProtocolFactory,
        host: str | None = None,
        port: int | str | None = None,
        *,
        ssl: Any = None,
        family: int = 0,
        proto: int = 0,
        flags: int = 0,
        sock: socket.socket | None = None,
        local_addr: tuple[str, int] | None = None,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
        happy_eyeballs_delay: float | None = None,
        interleave: int | None = None,
        all_errors: bool = False,
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        """Connect to ``host:port`` (or over the connected ``sock``): (transport, protocol)."""
        if server_hostname is not None and not ssl:
            raise ValueError("server_hostname is only meaningful with ssl")
        if server_hostname is None and ssl:
            # The host is the name to check the certificate against; without
            # one the caller must say (server_hostname='' skips the check).
            if not host:
                raise ValueError("You must set server_hostname when using ssl without a host")
            server_hostname = host
        _check_ssl_timeouts(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
        if sock is not None:
            check_not_ssl_socket(sock)
        if happy_eyeballs_delay is not None and interleave is None:
            interleave = 1  # racing is pointless unless families alternate

        if host is not None or port is not None:
            if sock is not None:
                raise ValueError("host/port and sock can not be specified at the same time")
            sock = await self._connect_to_host(
                host, port, family, proto, flags, local_addr,
                happy_eyeballs_delay, interleave, all_errors,
            )
        elif sock is None:
            raise ValueError("host and port was not specified and no sock specified")
        elif sock.type != socket.SOCK_STREAM:
            # Any family goes (AF_UNIX too, for backward compatibility), as
            # long as it is a stream.
            raise ValueError(f"A Stream Socket was expected, got {sock!r}")

        transport, protocol = await open_transport(
            self, sock, protocol_factory, ssl, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        if self.get_debug():
            logger.debug(
                "%r connected to %s:%r: (%r, %r)",
                transport.get_extra_info("socket"), host, port, transport, protocol,
            )
        return transport, protocol

    async def _connect_to_host(
        self,
        host: str | None,
        port: int | str | None,
        family: int,
        proto: int,
        flags: int,
        local_addr: Any,
        happy_eyeballs_delay: float | None,
        interleave: int | None,
        all_errors: bool,
    ) -> socket.socket:
        infos: Sequence[AddrInfo] = await resolve_address(
            self, (host, port), family=family, type=socket.SOCK_STREAM, proto=proto, flags=flags
        )
        if not infos:
            raise OSError("getaddrinfo() returned empty list")
        local_infos: Sequence[AddrInfo] | None = None
        if local_addr is not None:
            local_infos = await resolve_address(
                self, local_addr, family=family, type=socket.SOCK_STREAM, proto=proto,
                flags=flags,
            )
            if not local_infos:
                raise OSError("getaddrinfo() returned empty list")
        if interleave:
            infos = interleave_by_family(infos, interleave)

        # errors[i]: what attempt i raised (binding errors, then the connect error).
        errors: list[list[OSError]] = [[] for _ in infos]
        sock: socket.socket | None
        if happy_eyeballs_delay is None:
            sock = None
            for info, attempt_errors in zip(infos, errors, strict=True):
                try:
                    sock = await self._stream_connect_attempt(info, local_infos, attempt_errors)
                    break
                except OSError:
                    continue
        else:
            sock = await self._race_connections(infos, local_infos, errors, happy_eyeballs_delay)
        if sock is None:
            flat = [exc for attempt_errors in errors for exc in attempt_errors]
            try:
                raise _combined_error(flat, all_errors)
            finally:
                del flat, errors  # no traceback -> frame -> exception cycles
        return sock

    async def _stream_connect_attempt(
        self,
        info: AddrInfo,
        local_infos: Sequence[AddrInfo] | None,
        errors: list[OSError],
    ) -> socket.socket:
        """One attempt: create, bind (to a local address of the same family), connect."""
        family, kind, proto, _, address = info
        sock = None
        try:
            sock = socket.socket(family=family, type=kind, proto=proto)
            sock.setblocking(False)
            if local_infos is not None:
                self._bind_local(sock, family, local_infos, errors)
            await self.sock_connect(sock, address)
            return sock
        except OSError as exc:
            errors.append(exc)
            if sock is not None:
                sock.close()
            raise
        except BaseException:
            if sock is not None:
                sock.close()
            raise

    @staticmethod
    def _bind_local(
        sock: socket.socket, family: int, local_infos: Sequence[AddrInfo], errors: list[OSError]
    ) -> None:
        for local_family, _, _, _, local_address in local_infos:
            if local_family != family:
                continue
            try:
                sock.bind(local_address)
                return
            except OSError as exc:
                message = (
                    f"error while attempting to bind on address {local_address!r}: "
                    f"{bind_error_text(exc)}"
                )
                errors.append(OSError(exc.errno, message))
        if errors:
            raise errors.pop()
        raise OSError(f"no matching local address with {family=} found")

    async def _race_connections(
        self,
        infos: Sequence[AddrInfo],
        local_infos: Sequence[AddrInfo] | None,
        errors: list[list[OSError]],
        delay: float,
    ) -> socket.socket | None:
        """Happy Eyeballs: run the attempts the planner asks for; the first connected wins."""
        planner = ConnectPlanner(len(infos), delay)
        attempts: dict[int, asyncio.Task[socket.socket]] = {}
        finished: collections.deque[int] = collections.deque()
        wakeup: asyncio.Future[None] | None = None

        def on_finished(index: int, _task: object) -> None:
            finished.append(index)
            if wakeup is not None and not wakeup.done():
                wakeup.set_result(None)

        def start(indices: Iterable[int]) -> None:
            for index in indices:
                attempt = self._stream_connect_attempt(infos[index], local_infos, errors[index])
                task = self.create_task(attempt)
                task.add_done_callback(functools.partial(on_finished, index))
                attempts[index] = task

        winner: socket.socket | None = None
        timer: asyncio.TimerHandle | None = None
        try:
            start(planner.begin(self.time()))
            while not planner.done:
                if not finished:
                    wakeup = self.create_future()
                    deadline = planner.deadline
                    if deadline is not None:
                        timer = self.call_at(deadline, _wake, wakeup)
                    try:
                        await wakeup
                    finally:
                        wakeup = None
                        if timer is not None:
                            timer.cancel()
                            timer = None
                while finished and not planner.done:
                    index = finished.popleft()
                    task = attempts.pop(index)
                    if task.cancelled():
                        planner.attempt_cancelled(index)
                        continue
                    exc = task.exception()
                    if exc is None:
                        losers = planner.attempt_succeeded(index)
                        winner = task.result()
                        for loser in losers or ():
                            attempts[loser].cancel()
                    elif isinstance(exc, Exception):
                        # asyncio's staggered_race counts any error as a failed
                        # attempt; only OSErrors are reported in the end.
                        start(planner.attempt_failed(index, self.time()))
                    else:
                        raise exc
                start(planner.timer_expired(self.time()))
            return winner
        finally:
            # Whatever is still running lost (or we were cancelled): its socket
            # must not leak, even if it connected in the meantime.
            for task in attempts.values():
                if not task.cancel() and not task.cancelled() and task.exception() is None:
                    result = task.result()
                    if result is not winner:
                        result.close()

    # -- servers ----------------------------------------------------------------------------

    async def create_server(  # type: ignore[override]
        self,
        protocol_factory: ProtocolFactory,
        host: str | Sequence[str] | None = None,
        port: int | str | None = None,
        *,
        family: int = socket.AF_UNSPEC,
        flags: int = socket.AI_PASSIVE,
        sock: socket.socket | None = None,
        backlog: int = 100,
        ssl: Any = None,
        reuse_address: bool | None = None,
        reuse_port: bool | None = None,
        keep_alive: bool | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
        start_serving: bool = True,
    ) -> Server:
        """Listen on ``host:port`` (every address of every host) or on ``sock``."""
        if isinstance(ssl, bool):
            raise TypeError("ssl argument must be an SSLContext or None")
        if ssl_handshake_timeout is not None and ssl is None:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and ssl is None:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if sock is not None:
            check_not_ssl_socket(sock)

        if host is not None or port is not None:
            if sock is not None:
                raise ValueError("host/port and sock can not be specified at the same time")
            if reuse_address is None:
                reuse_address = _REUSE_ADDRESS_DEFAULT
            if host == "":
                hosts: Iterable[str | None] = [None]
            elif isinstance(host, str) or not isinstance(host, Iterable):
                hosts = [host]
            else:
                hosts = host
            answers = await asyncio.gather(*(
                self._resolve_for_server(h, port, family, flags) for h in hosts
            ))
            # A host listed twice, or two names for one address: bind it once.
            infos = list(dict.fromkeys(itertools.chain.from_iterable(answers)))
            sockets = open_tcp_listeners(
                infos,
                reuse_address=bool(reuse_address),
                reuse_port=bool(reuse_port),
                keep_alive=bool(keep_alive),
                debug=self.get_debug(),
            )
        else:
            if sock is None:
                raise ValueError("Neither host/port nor sock were specified")
            if sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A Stream Socket was expected, got {sock!r}")
            sockets = [sock]

        for listener in sockets:
            listener.setblocking(False)
        server = Server(
            self, sockets, protocol_factory, ssl, backlog,
            ssl_handshake_timeout, ssl_shutdown_timeout,
        )
        return await self._stream_server_started(server, start_serving)

    async def _resolve_for_server(
        self, host: str | None, port: Any, family: int, flags: int
    ) -> Sequence[AddrInfo]:
        infos = await resolve_address(
            self, (host, port), family=family, type=socket.SOCK_STREAM, flags=flags
        )
        if not infos:
            raise OSError(f"getaddrinfo({host!r}) returned empty list")
        return infos

    async def _stream_server_started(self, server: Server, start_serving: bool) -> Server:
        if start_serving:
            server._start_serving()
            # One loop turn, so the listening sockets are watched on return.
            await asyncio.sleep(0)
        if self.get_debug():
            logger.info("%r is serving", server)
        return server

    async def connect_accepted_socket(  # type: ignore[override]
        self,
        protocol_factory: ProtocolFactory,
        sock: socket.socket,
        *,
        ssl: Any = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        """Wrap a socket accepted elsewhere (server side of TLS, if ``ssl``)."""
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A Stream Socket was expected, got {sock!r}")
        _check_ssl_timeouts(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
        check_not_ssl_socket(sock)
        transport, protocol = await open_transport(
            self, sock, protocol_factory, ssl, "", server_side=True,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        if self.get_debug():
            logger.debug(
                "%r handled: (%r, %r)", transport.get_extra_info("socket"), transport, protocol
            )
        return transport, protocol

    # -- Unix sockets ------------------------------------------------------------------------

    async def create_unix_connection(  # type: ignore[override]
        self,
        protocol_factory: ProtocolFactory,
        path: str | bytes | os.PathLike[Any] | None = None,
        *,
        ssl: Any = None,
        sock: socket.socket | None = None,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        """Connect to the Unix socket at ``path`` (or use the connected ``sock``)."""
        assert server_hostname is None or isinstance(server_hostname, str)
        if ssl:
            if server_hostname is None:
                raise ValueError("you have to pass server_hostname when using ssl")
        else:
            _check_ssl_arguments(ssl, server_hostname, ssl_handshake_timeout, ssl_shutdown_timeout)
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0)
            try:
                sock.setblocking(False)
                await self.sock_connect(sock, path)
            except BaseException:
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError("no path and sock were specified")
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
            sock.setblocking(False)
        return await open_transport(
            self, sock, protocol_factory, ssl, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )

    async def create_unix_server(  # type: ignore[override]
        self,
        protocol_factory: ProtocolFactory,
        path: str | bytes | os.PathLike[Any] | None = None,
        *,
        sock: socket.socket | None = None,
        backlog: int = 100,
        ssl: Any = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
        start_serving: bool = True,
        cleanup_socket: bool = True,
    ) -> Server:
        """Listen on the Unix socket ``path`` (or on ``sock``).

        From 3.13 on (``cleanup_socket``), closing the server removes the socket
        file — if it is still the one the server bound.
        """
        if isinstance(ssl, bool):
            raise TypeError("ssl argument must be an SSLContext or None")
        _check_ssl_timeouts(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            sock = open_unix_listener(os.fspath(path))
        else:
            if sock is None:
                raise ValueError("path was not specified, and no sock specified")
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
        inodes: dict[socket.socket, int] = {}
        if cleanup_socket and _HAS_UNIX_CLEANUP:
            inode = unix_socket_inode(sock)
            if inode is not None:
                inodes[sock] = inode
        sock.setblocking(False)
        server = Server(
            self, [sock], protocol_factory, ssl, backlog,
            ssl_handshake_timeout, ssl_shutdown_timeout, inodes,
        )
        return await self._stream_server_started(server, start_serving)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
