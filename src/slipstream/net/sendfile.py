"""``loop.sendfile(transport, file)``: a file sent over a transport.

There are two ways to do it, and asyncio's rules say which applies:

* **Native**, for a plain socket transport: the kernel copies the file to the
  socket (``os.sendfile``), no byte passes through Python.  The transport must
  step aside first.  It stops reading (a ``data_received`` in the middle would
  be a protocol the application did not ask for), everything it had buffered
  goes out (so the bytes stay in order), ``write()`` is refused meanwhile
  ("sendfile is in progress"), and the file goes through ``loop.sock_sendfile``
  on the transport's own socket.  Then reading resumes.
* **Fallback**, for everything else (TLS, where the kernel cannot encrypt; a
  file that is not a regular file): read a block, ``transport.write`` it,
  repeat, waiting whenever the transport says it is full.

A transport says what it can do with asyncio's ``_sendfile_compatible``
marker (``TRY_NATIVE`` for the socket transport, ``FALLBACK`` for TLS); a
transport without it (datagram, pipes) cannot send files at all, as in
asyncio, and a third-party transport that sets it works too.

What callers rely on, as in asyncio: the file position ends just after the
last byte sent, also on error, so ``file.tell()`` says how far it got; and
``fallback=False`` turns "cannot do it natively" into an error
(``SendfileNotAvailableError``, or ``RuntimeError`` for a transport that has
no native path at all).  Arguments are checked exactly where asyncio checks
them (by ``sock_sendfile``, on the native path), so bad input fails the same
way on both loops.
"""

from __future__ import annotations

import asyncio
import functools
import socket
from asyncio.constants import _SendfileMode as SendfileMode
from typing import IO, Any

from ..core import CoreLoop
from ..transports.socket_stream import SocketTransport

__all__ = ["SendfileSupport"]

# The fallback's block size.  asyncio reads 16 KiB at a time, each read a trip
# to the executor and back.  With four times that, 100 MiB goes over loopback
# in 0.18 s instead of 0.8 s, and over TLS in 0.38 s instead of 0.78 s; it is
# still a size the socket transport hands the kernel in one send().
_FALLBACK_BLOCK = 64 * 1024


class SendfileSupport(CoreLoop):
    """``loop.sendfile()`` (``sock_sendfile`` is :mod:`slipstream.net.sockets`')."""

    async def sendfile(
        self,
        transport: asyncio.WriteTransport,
        file: IO[bytes],
        offset: int = 0,
        count: int | None = None,
        *,
        fallback: bool = True,
    ) -> int:
        """Send ``file`` over ``transport``; return the number of bytes sent.

        From ``offset``, ``count`` bytes or up to the end of the file.  A
        socket transport has the kernel copy the file (``os.sendfile``);
        otherwise, or if that fails before the first byte, the file is read
        in the default executor and written to the transport, unless
        ``fallback`` is false.  The file position ends after the last byte
        sent, on error too.
        """
        if transport.is_closing():
            raise RuntimeError("Transport is closing")
        mode = getattr(transport, "_sendfile_compatible", SendfileMode.UNSUPPORTED)
        if mode is SendfileMode.UNSUPPORTED:
            raise RuntimeError(f"sendfile is not supported for transport {transport!r}")
        if mode is SendfileMode.TRY_NATIVE:
            try:
                # Looked up on the instance: asyncio's tests (and some users)
                # replace this method to force the fallback.
                sent: int = await self._sendfile_native(transport, file, offset, count)
                return sent
            except asyncio.SendfileNotAvailableError:
                if not fallback:
                    raise
        if not fallback:
            raise RuntimeError(
                "fallback is disabled and native sendfile is not supported "
                f"for transport {transport!r}"
            )
        return await self._sendfile_fallback(transport, file, offset, count)

    # -- native --------------------------------------------------------------------------

    async def _sendfile_native(
        self, transport: Any, file: IO[bytes], offset: int, count: int | None
    ) -> int:
        """The kernel copies the file to the transport's socket (asyncio's hook name)."""
        if not isinstance(transport, SocketTransport):
            raise asyncio.SendfileNotAvailableError(
                f"sendfile syscall is not supported for transport {transport!r}"
            )
        resume_reading = transport.is_reading()
        transport.pause_reading()
        try:
            sock, lost = await transport.begin_sendfile()
            try:
                return await self._sendfile_until_lost(sock, lost, file, offset, count)
            finally:
                transport.end_sendfile()
        finally:
            if resume_reading:
                transport.resume_reading()

    async def _sendfile_until_lost(
        self,
        sock: socket.socket,
        lost: asyncio.Future[None],
        file: IO[bytes],
        offset: int,
        count: int | None,
    ) -> int:
        # sock_sendfile waits for writability on the socket, and nothing would
        # ever wake it if the transport closed the socket under it (a close()
        # or abort() meanwhile; asyncio hangs there).  So it runs as a task,
        # and the transport's "connection lost" future cancels it.  Awaiting
        # the task also forwards our own cancellation to it, and returns only
        # once it has let go of the socket and set the file position.
        sending = self.create_task(
            self.sock_sendfile(sock, file, offset, count, fallback=False)
        )
        stop = functools.partial(_cancel_task, sending)
        lost.add_done_callback(stop)
        try:
            return await sending
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if lost.cancelled() or not lost.done() or (task is not None and task.cancelling()):
                raise
            exc = lost.exception()
            assert exc is not None
            raise exc from None
        finally:
            lost.remove_done_callback(stop)

    # -- fallback --------------------------------------------------------------------

    async def _sendfile_fallback(
        self, transport: Any, file: IO[bytes], offset: int, count: int | None
    ) -> int:
        """Read blocks in the executor and write them, minding the transport's flow control."""
        if offset:
            file.seek(offset)
        # asyncio tests ``if count`` (not ``is None``) here: 0 means "to the end".
        blocksize = min(count, _FALLBACK_BLOCK) if count else _FALLBACK_BLOCK
        buffer = memoryview(bytearray(blocksize))
        total = 0
        gate = _FlowGate(self, transport)
        try:
            while True:
                if count:
                    blocksize = min(count - total, blocksize)
                    if blocksize <= 0:
                        return total
                view = buffer[:blocksize]
                read = await self.run_in_executor(None, file.readinto, view)  # type: ignore[attr-defined]
                if not read:
                    return total  # end of file
                await gate.wait_writable()
                # Reusing the buffer is safe: transports copy what they keep.
                transport.write(view[:read])
                total += read
        finally:
            if total > 0 and hasattr(file, "seek"):
                file.seek(offset + total)
            gate.restore()


def _cancel_task(task: asyncio.Task[Any], lost: asyncio.Future[None]) -> None:
    task.cancel()


class _FlowGate(asyncio.Protocol):
    """Stands in for the transport's protocol while the fallback writes the file.

    The fallback must not outrun the transport: it waits whenever the transport
    calls ``pause_writing`` until ``resume_writing``.  Those calls go to the
    transport's protocol, so this object takes its place for the duration
    (``set_protocol``), turns them into something to await, keeps reading
    paused, passes ``connection_lost`` on, and puts everything back in
    :meth:`restore`.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, transport: Any) -> None:
        self._loop = loop
        self._transport = transport
        self._protocol = transport.get_protocol()
        self._resume_reading = transport.is_reading()
        # Read the way asyncio reads it; a transport without the attribute
        # simply never was paused as far as we can tell.
        self._was_paused = bool(getattr(transport, "_protocol_paused", False))
        self._lost = False
        # Not None while the transport wants writing paused.
        self._writable: asyncio.Future[None] | None = (
            loop.create_future() if self._was_paused else None
        )
        transport.pause_reading()
        transport.set_protocol(self)

    async def wait_writable(self) -> None:
        """Return once the transport takes more; raise if the connection is gone."""
        if self._transport.is_closing():
            raise ConnectionError("Connection closed by peer")
        if self._writable is not None:
            await self._writable

    def restore(self) -> None:
        """Give the transport its protocol back, told where flow control stands."""
        transport, protocol = self._transport, self._protocol
        transport.set_protocol(protocol)
        if self._resume_reading:
            transport.resume_reading()
        writable = self._writable
        paused = writable is not None
        # Nobody waits on the future any more.  If the connection was lost,
        # mark its error seen: the fallback already raised its own.
        if writable is not None and not writable.cancel() and not writable.cancelled():
            writable.exception()
        if self._lost:
            return  # no flow control after connection_lost()
        # The protocol missed the calls made meanwhile: bring it in line with
        # the transport, so that the next call it gets matches its state.  A
        # protocol paused at the end gets its resume from the transport later.
        # (asyncio resumes whoever was paused before, so a protocol paused at
        # both ends is resumed twice, and one paused only at the end never
        # hears of the pause; asyncio's own StreamWriter asserts on that.)
        if paused and not self._was_paused:
            protocol.pause_writing()
        elif self._was_paused and not paused:
            protocol.resume_writing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        raise RuntimeError("Invalid state: connection should have been established already.")

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        writable = self._writable
        if writable is not None and not writable.done():
            # A peer that goes away before the whole file is out is an error,
            # even a clean close.
            writable.set_exception(
                exc if exc is not None else ConnectionError("Connection is closed by peer")
            )
        self._protocol.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        writable = self._writable
        if writable is not None:
            self._writable = None
            if not writable.done():
                writable.set_result(None)

    def data_received(self, data: bytes) -> None:
        raise RuntimeError("Invalid state: reading should be paused")

    def eof_received(self) -> bool | None:
        raise RuntimeError("Invalid state: reading should be paused")
