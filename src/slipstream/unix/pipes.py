"""Pipes and ptys: ``connect_read_pipe`` and ``connect_write_pipe``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from ..core import CoreLoop
from ..core.errors import logger
from ..transports.pipe import ReadPipeTransport, WritePipeTransport

_P = TypeVar("_P", bound=asyncio.BaseProtocol)
_T = TypeVar("_T", bound=asyncio.BaseTransport)


class PipeEndpoints(CoreLoop):
    """``connect_read_pipe`` / ``connect_write_pipe``.

    ``pipe`` is any object with a ``fileno()`` for a pipe, a socket or a
    character device (a tty or pty); it is switched to non-blocking mode, and
    the transport closes it when the connection is lost.  Regular files are
    refused with ValueError, as asyncio does: they are always "ready", so a
    readiness loop cannot drive them.
    """

    async def connect_read_pipe(
        self, protocol_factory: Callable[[], _P], pipe: Any
    ) -> tuple[asyncio.ReadTransport, _P]:
        """Read from ``pipe`` into a new protocol; returns ``(transport, protocol)``."""
        return await self._connect_pipe(ReadPipeTransport, "Read", protocol_factory, pipe)

    async def connect_write_pipe(
        self, protocol_factory: Callable[[], _P], pipe: Any
    ) -> tuple[asyncio.WriteTransport, _P]:
        """Write to ``pipe`` from a new protocol; returns ``(transport, protocol)``."""
        return await self._connect_pipe(WritePipeTransport, "Write", protocol_factory, pipe)

    async def _connect_pipe(
        self,
        transport_type: Callable[..., _T],
        direction: str,
        protocol_factory: Callable[[], _P],
        pipe: Any,
    ) -> tuple[_T, _P]:
        protocol = protocol_factory()
        waiter: asyncio.Future[None] = self.create_future()
        transport = transport_type(self, pipe, protocol, waiter)
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        if self.get_debug():
            logger.debug(
                "%s pipe %r connected: (%r, %r)", direction, pipe.fileno(), transport, protocol
            )
        return transport, protocol
