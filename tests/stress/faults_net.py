"""Network faults: resets mid-write and mid-read, half-close, refused and timed-out connect
storms, and a server that runs out of descriptors while accepting."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import struct
from collections.abc import Iterator
from typing import Any

from .common import Figures, Scale, open_fds, wait_until

CHUNK = b"x" * (1024 * 1024)
RESETS = (ConnectionResetError, BrokenPipeError)


def reset(transport: asyncio.Transport) -> None:
    """Close ``transport`` with a TCP RST instead of a FIN (SO_LINGER with a zero timeout)."""
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class ResetAfter(asyncio.Protocol):
    """Server side: sends ``reply``, then resets once ``threshold`` bytes have arrived."""

    def __init__(self, threshold: int, reply: bytes = b"") -> None:
        self.threshold = threshold
        self.reply = reply
        self.received = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.reply:
            transport.write(self.reply)
        if self.threshold == 0:
            # Let the reply reach the peer first: a reset throws away unsent data.
            asyncio.get_running_loop().call_later(0.05, reset, transport)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self.received >= self.threshold and self.transport is not None:
            reset(self.transport)
            self.transport = None


class Flooder(asyncio.Protocol):
    """Client side: writes 1 MiB chunks whenever the transport is not paused."""

    def __init__(self) -> None:
        self.lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.flood()

    def flood(self) -> None:
        transport = self.transport
        # A write after the connection is lost is dropped, so it never pauses us.
        while transport is not None and not self.paused and not transport.is_closing():
            transport.write(CHUNK)
        # Go on once resume_writing runs; nothing else to do meanwhile.

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        asyncio.get_running_loop().call_soon(self.flood)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)


async def reset_mid_write(connections: int) -> dict[str, int]:
    """Each client floods; its server resets after 4 MiB.  Every client must hear of it."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ResetAfter(4 * len(CHUNK)), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    seen: dict[str, int] = {}
    clients = [await loop.create_connection(Flooder, "127.0.0.1", port) for _ in range(connections)]
    for transport, flooder in clients:
        exc = await asyncio.wait_for(flooder.lost, 10)
        if not isinstance(exc, RESETS):
            raise AssertionError(f"connection_lost({exc!r}) after a reset mid-write")
        if not transport.is_closing():
            raise AssertionError("the transport is not closing after connection_lost")
        transport.write(b"after the reset")  # dropped (and counted), not raised
        seen[type(exc).__name__] = seen.get(type(exc).__name__, 0) + 1
    server.close()
    await server.wait_closed()
    return seen


async def reset_mid_read(connections: int) -> dict[str, int]:
    """The server sends a greeting then resets; a streams reader must raise, not hang."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ResetAfter(0, b"hello"), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    seen: dict[str, int] = {}
    for _ in range(connections):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        outcome = "eof"
        try:
            while await asyncio.wait_for(reader.read(65536), 10):
                pass
        except RESETS as exc:
            outcome = type(exc).__name__
        writer.close()
        if outcome == "eof":
            raise AssertionError("a reset mid-read was reported as a clean end of file")
        seen[outcome] = seen.get(outcome, 0) + 1
    server.close()
    await server.wait_closed()
    return seen


async def half_close(connections: int) -> int:
    """Each side shuts down its sending half first once, and the other half keeps working."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await reader.readexactly(1)
        if first == b"C":  # the client will close its half first
            body = await reader.read()  # to EOF
            writer.write(b"%d" % len(body))  # our half is still open
            writer.write_eof()
        else:  # we close our half first, then read the client's answer
            writer.write(b"server speaks first")
            writer.write_eof()
            answer = await reader.read()
            if answer != b"heard 19":
                raise AssertionError(f"the answer after our EOF was {answer!r}")
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    for index in range(connections):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if index % 2 == 0:
            writer.write(b"C" + b"y" * 100_000)
            writer.write_eof()
            if await reader.read() != b"100000":
                raise AssertionError("the reply after our EOF did not come")
        else:
            writer.write(b"S")
            heard = await reader.read()
            if not reader.at_eof():
                raise AssertionError("no EOF after the server's write_eof")
            writer.write(b"heard %d" % len(heard))
            writer.write_eof()
            await writer.drain()
            await reader.read()  # the server closes once it has our answer
        writer.close()
        await writer.wait_closed()
    server.close()
    await server.wait_closed()
    return connections


async def refused_storm(connections: int) -> int:
    """Connect many times at once to a port nobody listens on: each is refused, nothing leaks."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    loop = asyncio.get_running_loop()
    outcomes = await asyncio.gather(
        *(loop.create_connection(asyncio.Protocol, "127.0.0.1", port) for _ in range(connections)),
        return_exceptions=True,
    )
    refused = sum(isinstance(outcome, ConnectionRefusedError) for outcome in outcomes)
    if refused != connections:
        raise AssertionError(f"{refused} of {connections} connects refused: {outcomes[:3]!r}")
    return refused


async def timeout_storm(connections: int) -> int:
    """Connect many times at once to a listener whose accept queue is full: all time out."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        # Fill the accept queue (a backlog of 0 holds one connection); later SYNs are dropped.
        fillers = []
        for _ in range(2):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(address)
            fillers.append(filler)
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        try:
            outcomes = await asyncio.gather(
                *(
                    asyncio.wait_for(loop.create_connection(asyncio.Protocol, *address), 0.3)
                    for _ in range(connections)
                ),
                return_exceptions=True,
            )
        finally:
            for filler in fillers:
                filler.close()
    timed_out = sum(isinstance(outcome, TimeoutError) for outcome in outcomes)
    for outcome in outcomes:
        if isinstance(outcome, tuple):
            outcome[0].close()
    if timed_out != connections:
        raise AssertionError(f"{timed_out} of {connections} connects timed out: {outcomes[:3]!r}")
    return timed_out


@contextlib.contextmanager
def descriptors_exhausted() -> Iterator[list[int]]:
    """Use up every descriptor the soft limit allows (on dup'd /dev/null); give them back after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_fds() + 64, hard))
    spent: list[int] = []
    try:
        with open(os.devnull) as null:
            while True:
                try:
                    spent.append(os.dup(null.fileno()))
                except OSError:
                    break
        yield spent
    finally:
        for fd in spent:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def emfile_on_accept(clients: int) -> Figures:
    """Clients arrive while the server has no descriptor to accept them with.

    As on asyncio, the server reports it to the exception handler, stops watching its
    listening socket for a second, and then accepts everyone once descriptors are free.
    """
    loop = asyncio.get_running_loop()
    reports: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reports.append(context))
    accepted: list[asyncio.BaseTransport] = []

    class Counting(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted.append(transport)

    server = await loop.create_server(Counting, "127.0.0.1", 0, backlog=clients + 8)
    address = server.sockets[0].getsockname()
    waiting = []
    try:
        with descriptors_exhausted() as spent:
            for _ in range(clients):
                # Give back one descriptor for each client; the kernel completes their
                # connections in the listening socket's queue, with none left to accept.
                os.close(spent.pop())
                waiting.append(socket.create_connection(address))
            await asyncio.sleep(0.2)  # the server tries to accept, and cannot
            during = len(accepted)
        await wait_until(lambda: len(accepted) == clients, 10.0, "the server to accept again")
    finally:
        loop.set_exception_handler(None)
        for sock in waiting:
            sock.close()
        for transport in accepted:
            transport.close()
        server.close()
        await server.wait_closed()
    if not any(isinstance(context.get("exception"), OSError) for context in reports):
        raise AssertionError(f"the out-of-descriptors accept was not reported: {reports!r}")
    return {"clients": clients, "accepted_while_exhausted": during, "accepted_after": clients}


async def network_faults(scale: Scale) -> Figures:
    """Every network fault scenario, with the fds before and after."""
    fds_before = open_fds()
    few = max(4, scale.storm_connections // 20)
    figures: Figures = {
        "reset_mid_write": await reset_mid_write(few),
        "reset_mid_read": await reset_mid_read(few),
        "half_close_connections": await half_close(few),
        "refused": await refused_storm(scale.storm_connections),
        "timed_out": await timeout_storm(scale.storm_connections),
        "emfile_on_accept": await emfile_on_accept(few),
    }
    await wait_until(lambda: open_fds() <= fds_before, 5.0, "every descriptor to be closed")
    figures["fds_before"], figures["fds_after"] = fds_before, open_fds()
    return figures
