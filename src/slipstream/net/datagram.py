"""UDP and Unix datagram endpoints: ``create_datagram_endpoint``.

The rules are asyncio's, argument for argument (the errors and their messages
included): either a ready socket (``sock=``) or addresses to bind and connect.
Addresses are resolved for ``SOCK_DGRAM`` and grouped by ``(family, proto)``;
a pair that can serve both the local and the remote address is tried, in the
resolver's order, until a socket can be created, bound and connected.  The
first error is raised if none can.

With ``allow_broadcast`` the socket is not connected: the remote address is
only remembered as the default destination of ``sendto``, so the endpoint can
both send to a broadcast address and receive replies from any host.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any, TypeVar

from ..core import CoreLoop
from ..core.errors import logger
from ..transports.datagram import DatagramTransport
from .dns import resolve_address
from .sockopts import remove_stale_unix_socket, set_reuse_port

_ProtocolT = TypeVar("_ProtocolT", bound=asyncio.BaseProtocol)

_HAS_AF_UNIX = hasattr(socket, "AF_UNIX")


def _check_datagram_socket(sock: socket.socket) -> None:
    # Only stream sockets are refused: SOCK_RAW and SOCK_SEQPACKET sockets work
    # as datagram endpoints.  This is asyncio's rule since 3.11.9, 3.12.2 and
    # 3.13 (CPython gh-114887: earlier patch releases accepted SOCK_DGRAM only,
    # a regression for raw sockets, with the message "A UDP Socket was expected").
    if sock.type == socket.SOCK_STREAM:
        raise ValueError(f"A datagram socket was expected, got {sock!r}")


AddressPair = tuple[tuple[int, int], tuple[Any, Any]]


class DatagramEndpoints(CoreLoop):
    """``create_datagram_endpoint``."""

    async def create_datagram_endpoint(  # type: ignore[override]
        self,
        protocol_factory: Callable[[], _ProtocolT],
        local_addr: Any = None,
        remote_addr: Any = None,
        *,
        family: int = 0,
        proto: int = 0,
        flags: int = 0,
        reuse_port: bool | None = None,
        allow_broadcast: bool | None = None,
        sock: socket.socket | None = None,
    ) -> tuple[DatagramTransport, _ProtocolT]:
        """Create a datagram endpoint: ``(transport, protocol)``."""
        remote_address: Any = None
        if sock is not None:
            _check_datagram_socket(sock)
            options = {
                "local_addr": local_addr,
                "remote_addr": remote_addr,
                "family": family,
                "proto": proto,
                "flags": flags,
                "reuse_port": reuse_port,
                "allow_broadcast": allow_broadcast,
            }
            problems = ", ".join(f"{name}={value}" for name, value in options.items() if value)
            if problems:
                raise ValueError(
                    "socket modifier keyword arguments can not be used "
                    f"when sock is specified. ({problems})"
                )
            sock.setblocking(False)
        else:
            pairs = await self._datagram_address_pairs(
                local_addr, remote_addr, family, proto, flags
            )
            sock, remote_address = await self._open_datagram_socket(
                pairs, local_addr, remote_addr, reuse_port, allow_broadcast
            )

        protocol = protocol_factory()
        waiter: asyncio.Future[None] = self.create_future()
        transport = DatagramTransport(self, sock, protocol, remote_address, waiter)
        if self.get_debug():
            if local_addr:
                logger.info(
                    "Datagram endpoint local_addr=%r remote_addr=%r created: (%r, %r)",
                    local_addr, remote_addr, transport, protocol,
                )
            else:
                logger.debug(
                    "Datagram endpoint remote_addr=%r created: (%r, %r)",
                    remote_addr, transport, protocol,
                )
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        return transport, protocol

    async def _datagram_address_pairs(
        self, local_addr: Any, remote_addr: Any, family: int, proto: int, flags: int
    ) -> list[AddressPair]:
        """The ``((family, proto), (local, remote))`` candidates, in the order to try them."""
        if not (local_addr or remote_addr):
            if family == 0:
                raise ValueError("unexpected address family")
            return [((family, proto), (None, None))]

        if _HAS_AF_UNIX and family == socket.AF_UNIX:
            for addr in (local_addr, remote_addr):
                if addr is not None and not isinstance(addr, str):
                    raise TypeError("string is expected")
            # An abstract socket's name starts with a NUL: there is no file.
            if local_addr and local_addr[0] not in (0, "\x00"):
                remove_stale_unix_socket(local_addr)
            return [((family, proto), (local_addr, remote_addr))]

        # Group the resolved addresses by (family, proto), keeping the
        # resolver's order: a socket of one family can use only its own.
        by_kind: dict[tuple[int, int], list[Any]] = {}
        for index, addr in ((0, local_addr), (1, remote_addr)):
            if addr is None:
                continue
            if not (isinstance(addr, tuple) and len(addr) == 2):
                raise TypeError("2-tuple is expected")
            infos = await resolve_address(
                self, addr, family=family, type=socket.SOCK_DGRAM, proto=proto, flags=flags
            )
            if not infos:
                raise OSError("getaddrinfo() returned empty list")
            for info_family, _, info_proto, _, address in infos:
                pair = by_kind.setdefault((info_family, info_proto), [None, None])
                pair[index] = address

        pairs: list[AddressPair] = [
            (kind, (pair[0], pair[1]))
            for kind, pair in by_kind.items()
            if not ((local_addr and pair[0] is None) or (remote_addr and pair[1] is None))
        ]
        if not pairs:
            raise ValueError("can not get address information")
        return pairs

    async def _open_datagram_socket(
        self,
        pairs: list[AddressPair],
        local_addr: Any,
        remote_addr: Any,
        reuse_port: bool | None,
        allow_broadcast: bool | None,
    ) -> tuple[socket.socket, Any]:
        """Create, bind and connect a socket for the first pair that works."""
        errors: list[OSError] = []
        for (family, proto), (local_address, remote_address) in pairs:
            sock = None
            try:
                sock = socket.socket(family=family, type=socket.SOCK_DGRAM, proto=proto)
                if reuse_port:
                    set_reuse_port(sock)
                if allow_broadcast:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                sock.setblocking(False)
                if local_addr:
                    sock.bind(local_address)
                if remote_addr:
                    if not allow_broadcast:
                        await self.sock_connect(sock, remote_address)
                    return sock, remote_address
                return sock, None
            except OSError as exc:
                if sock is not None:
                    sock.close()
                errors.append(exc)
            except BaseException:
                if sock is not None:
                    sock.close()
                raise
        try:
            raise errors[0]
        finally:
            errors.clear()  # the exceptions' tracebacks refer to this frame
