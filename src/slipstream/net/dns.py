"""Name resolution: ``getaddrinfo`` and ``getnameinfo`` off the loop's thread.

The C library's resolver blocks, so asyncio runs it in the loop's default
executor, and so do we.  A thread hop costs tens of microseconds, though, and a
great many calls ask nothing of the resolver: the host is already a numeric
address (``"127.0.0.1"``, ``"::1"``) and the port a number.  For those the answer
is computed here, on the loop's thread, and it is *exactly* what
:func:`socket.getaddrinfo` would return; anything we are not certain of (service
names, scoped IPv6 addresses, unusual flags or socket types, error cases) still
goes to the real resolver, so the error raised is the C library's own.

:func:`resolve_address` is the loop's internal helper for methods that take an
address (``sock_connect``, ``create_datagram_endpoint``, ...): like asyncio's
``_ensure_resolved`` it returns the address as given when it is already numeric
and otherwise calls ``loop.getaddrinfo`` (so a test or a library that replaces
that method is honoured).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..core import CoreLoop
from ..core.errors import logger

__all__ = ["NameResolution", "numeric_address_info", "numeric_getaddrinfo", "resolve_address"]

if TYPE_CHECKING:
    from socket import _GetAddrInfoResult as AddrInfoList
else:
    AddrInfoList = list

# One entry of getaddrinfo()'s answer, loosely typed (an address is a tuple
# whose shape depends on the family).
AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, Any]

_HAS_IPV6 = hasattr(socket, "AF_INET6")

# The (type, proto) pairs glibc returns for a numeric host, by the (type, proto)
# asked for; a pair that is not here goes to the real resolver (which may fail
# with "ai_socktype not supported" and the like: that error must be its own).
_STREAM = (socket.SOCK_STREAM, socket.IPPROTO_TCP)
_DGRAM = (socket.SOCK_DGRAM, socket.IPPROTO_UDP)
_RAW = (socket.SOCK_RAW, 0)
_KINDS: dict[tuple[int, int], tuple[tuple[socket.SocketKind, int], ...]] = {
    (0, 0): (_STREAM, _DGRAM, _RAW),
    (0, socket.IPPROTO_TCP): (_STREAM,),
    (0, socket.IPPROTO_UDP): (_DGRAM,),
    (socket.SOCK_STREAM, 0): (_STREAM,),
    (socket.SOCK_STREAM, socket.IPPROTO_TCP): (_STREAM,),
    (socket.SOCK_DGRAM, 0): (_DGRAM,),
    (socket.SOCK_DGRAM, socket.IPPROTO_UDP): (_DGRAM,),
}

# Flags that do not change the answer for a numeric host and port.  AI_CANONNAME
# fills in the canonical name and AI_ADDRCONFIG depends on the interfaces that
# are configured: those calls take the slow path.
_NEUTRAL_FLAGS = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV | socket.AI_PASSIVE

_FAMILIES: tuple[socket.AddressFamily, ...] = (
    (socket.AF_INET, socket.AF_INET6) if _HAS_IPV6 else (socket.AF_INET,)
)


def _numeric_port(port: object) -> int | None:
    """The port number ``port`` stands for, or None if it is not plainly numeric."""
    if port is None or port == "" or port == b"":
        return 0
    if type(port) is int:
        number = port
    elif isinstance(port, (str, bytes)) and port.isascii() and port.isdigit():
        number = int(port)
    else:
        return None
    return number if 0 <= number <= 0xFFFF else None


def _parse_numeric_host(host: object, family: int) -> tuple[socket.AddressFamily, bytes] | None:
    """``(family, packed address)`` if ``host`` is a numeric address of ``family``."""
    if isinstance(host, bytes):
        try:
            host = host.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(host, str) or not host or "%" in host:
        # Linux's inet_pton() rejects an IPv6 zone index ("fe80::1%eth0"):
        # only the resolver knows how to turn it into a scope id.
        return None
    for af in _FAMILIES if family == socket.AF_UNSPEC else (family,):
        try:
            return socket.AddressFamily(af), socket.inet_pton(af, host)
        except (OSError, ValueError):
            continue
    return None


def numeric_getaddrinfo(
    host: object, port: object, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
) -> AddrInfoList | None:
    """What ``socket.getaddrinfo`` returns for a numeric host and port, or None.

    None means "not certain": the caller must ask the real resolver.
    """
    if flags & ~_NEUTRAL_FLAGS or family not in (socket.AF_UNSPEC, *_FAMILIES):
        return None
    kinds = _KINDS.get((type, proto))
    if kinds is None:
        return None
    number = _numeric_port(port)
    if number is None:
        return None
    parsed = _parse_numeric_host(host, family)
    if parsed is None:
        return None
    af, packed = parsed
    # The C library formats the address it parsed, so "::0001" comes back as "::1".
    text = socket.inet_ntop(af, packed)
    if af == socket.AF_INET6:
        return [(socket.AF_INET6, kind, p, "", (text, number, 0, 0)) for kind, p in kinds]
    return [(socket.AF_INET, kind, p, "", (text, number)) for kind, p in kinds]


def numeric_address_info(
    host: object,
    port: object,
    family: int,
    type: int,
    proto: int,
    flowinfo: int = 0,
    scopeid: int = 0,
) -> AddrInfo | None:
    """One addrinfo entry for ``(host, port)`` if the host is already an IP address.

    This is what asyncio's ``_ensure_resolved`` does before it calls
    ``getaddrinfo``: the host is returned as the caller spelled it, and an IPv6
    address keeps the caller's flowinfo and scope id.  None if a lookup is needed.
    """
    if host is None or proto not in (0, socket.IPPROTO_TCP, socket.IPPROTO_UDP):
        return None
    if type == socket.SOCK_STREAM:
        proto = socket.IPPROTO_TCP
    elif type == socket.SOCK_DGRAM:
        proto = socket.IPPROTO_UDP
    else:
        return None
    if port is None or port == "" or port == b"":
        number = 0
    else:
        try:
            number = int(port)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            return None  # a service name such as "http"
    if isinstance(host, bytes):
        host = host.decode("idna")
    if not isinstance(host, str) or "%" in host:
        return None
    for af in _FAMILIES if family == socket.AF_UNSPEC else (family,):
        try:
            socket.inet_pton(af, host)
        except (OSError, ValueError):
            continue
        kind = socket.SocketKind(type)
        if af == socket.AF_INET6:
            return socket.AF_INET6, kind, proto, "", (host, number, flowinfo, scopeid)
        return socket.AddressFamily(af), kind, proto, "", (host, number)
    return None


async def resolve_address(
    loop: asyncio.AbstractEventLoop,
    address: Any,
    *,
    family: int = 0,
    type: int = socket.SOCK_STREAM,
    proto: int = 0,
    flags: int = 0,
) -> Sequence[AddrInfo]:
    """Resolve ``address`` (a ``(host, port, ...)`` tuple) like asyncio's ``_ensure_resolved``."""
    host, port = address[:2]
    info = numeric_address_info(host, port, family, type, proto, *address[2:])
    if info is not None:
        return [info]
    return await loop.getaddrinfo(host, port, family=family, type=type, proto=proto, flags=flags)


class NameResolution(CoreLoop):
    """``getaddrinfo`` / ``getnameinfo``."""

    async def getaddrinfo(
        self,
        host: bytes | str | None,
        port: bytes | str | int | None,
        *,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> AddrInfoList:
        """Resolve ``host`` and ``port`` as :func:`socket.getaddrinfo` does, without blocking."""
        answer = numeric_getaddrinfo(host, port, family, type, proto, flags)
        if answer is not None:
            return answer
        if self._debug:
            return await self.run_in_executor(
                None, self._getaddrinfo_logged, host, port, family, type, proto, flags
            )
        return await self.run_in_executor(
            None, socket.getaddrinfo, host, port, family, type, proto, flags
        )

    async def getnameinfo(
        self, sockaddr: tuple[str, int] | tuple[str, int, int, int], flags: int = 0
    ) -> tuple[str, str]:
        """:func:`socket.getnameinfo` in the default executor."""
        return await self.run_in_executor(None, socket.getnameinfo, sockaddr, flags)

    def _getaddrinfo_logged(
        self, host: Any, port: Any, family: int, type: int, proto: int, flags: int
    ) -> AddrInfoList:
        # Debug mode: say what was asked and how long the resolver took, at
        # INFO level when it was slow enough to matter (as asyncio does).
        query = ", ".join([
            f"{host}:{port!r}",
            *(f"{name}={value!r}" for name, value in
              (("family", family), ("type", type), ("proto", proto), ("flags", flags)) if value),
        ])
        logger.debug("Get address info %s", query)
        started = self.time()
        answer = socket.getaddrinfo(host, port, family, type, proto, flags)
        elapsed = self.time() - started
        log = logger.info if elapsed >= self.slow_callback_duration else logger.debug
        log("Getting address info %s took %.3fms: %r", query, elapsed * 1e3, answer)
        return answer
