"""What a stream transport keeps per connection, and that keeping less changes nothing visible.

The socket transport makes its write buffer, its local address and its
``TransportSocket`` only when needed, and a server keeps its clients in a map
of plain weak references (see "What an idle connection costs" in
``slipstream/transports/socket_stream.py``).  These tests hold every loop to
asyncio's answers where that laziness could show: extra info before and after a
close, writes that have to wait after the buffer drained once, a client
transport dropped unclosed while the server waits for its clients.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import sys
import warnings
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

T = TypeVar("T")
Run = Callable[[Coroutine[Any, Any, T]], T]


class Recorder(asyncio.Protocol):
    """Remembers its transport, what it received and how it ended."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.made = asyncio.get_running_loop().create_future()
        self.lost = asyncio.get_running_loop().create_future()
        self.data = bytearray()
        self.paused = 0
        self.resumed = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.made.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.data += data

    def pause_writing(self) -> None:
        self.paused += 1

    def resume_writing(self) -> None:
        self.resumed += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


def _recording_factory() -> tuple[list[Recorder], Callable[[], Recorder]]:
    """A protocol factory for a server, and the list of the protocols it made."""
    accepted: list[Recorder] = []

    def factory() -> Recorder:
        accepted.append(Recorder())
        return accepted[-1]

    return accepted, factory


def _transport_of(protocol: Recorder) -> asyncio.Transport:
    assert protocol.transport is not None
    return protocol.transport


async def _serve_one() -> tuple[asyncio.Server, Recorder, asyncio.Transport, Recorder]:
    """A server with one accepted connection: (server, its protocol, client transport, client)."""
    loop = asyncio.get_running_loop()
    accepted, factory = _recording_factory()
    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, client = await loop.create_connection(Recorder, "127.0.0.1", port)
    while not accepted:
        await asyncio.sleep(0)
    await accepted[0].made
    return server, accepted[0], transport, client


def test_extra_info_of_accepted_and_connected_transports(run: Run[None]) -> None:
    async def main() -> None:
        server, accepted, client_transport, _ = await _serve_one()
        server_transport = _transport_of(accepted)
        port = server.sockets[0].getsockname()[1]
        client_address = client_transport.get_extra_info("sockname")
        assert server_transport.get_extra_info("sockname") == ("127.0.0.1", port)
        assert server_transport.get_extra_info("peername") == client_address
        assert client_transport.get_extra_info("peername") == ("127.0.0.1", port)
        sock = server_transport.get_extra_info("socket")
        # One TransportSocket per transport: asked twice, the same object.
        assert server_transport.get_extra_info("socket") is sock
        assert sock.getsockname() == ("127.0.0.1", port)
        assert sock.family == socket.AF_INET
        assert server_transport.get_extra_info("nonexistent") is None
        assert server_transport.get_extra_info("nonexistent", 42) == 42
        client_transport.close()
        server_transport.close()
        await accepted.lost
        server.close()
        await server.wait_closed()

    run(main())


def test_sockname_is_still_known_after_the_close(run: Run[None]) -> None:
    # asyncio reads the local address when the transport is made; slipstream
    # when first asked, or just before the socket closes.  Never asked until
    # after the close, both must give the same answer.
    async def main() -> None:
        server, accepted, client_transport, client = await _serve_one()
        server_transport = _transport_of(accepted)
        port = server.sockets[0].getsockname()[1]
        expected_peer = client_transport.get_extra_info("sockname")
        server_transport.abort()
        await accepted.lost
        assert server_transport.get_extra_info("sockname") == ("127.0.0.1", port)
        assert server_transport.get_extra_info("peername") == expected_peer
        # The socket wrapper of a closed transport still answers for the socket.
        assert server_transport.get_extra_info("socket").fileno() == -1
        await client.lost
        assert client_transport.get_extra_info("peername") == ("127.0.0.1", port)
        server.close()
        await server.wait_closed()

    run(main())


def test_extra_info_of_a_unix_connection(run: Run[None], tmp_path: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        path = str(tmp_path / "sock")
        accepted, factory = _recording_factory()

        server = await loop.create_unix_server(factory, path)
        transport, client = await loop.create_unix_connection(Recorder, path)
        while not accepted:
            await asyncio.sleep(0)
        await accepted[0].made
        server_transport = accepted[0].transport
        assert server_transport is not None
        assert server_transport.get_extra_info("sockname") == path
        assert server_transport.get_extra_info("peername") == ""
        assert transport.get_extra_info("peername") == path
        transport.close()
        await client.lost
        assert transport.get_extra_info("peername") == path
        server_transport.close()
        server.close()
        await server.wait_closed()

    run(main())


def test_writes_wait_again_after_the_buffer_drained(run: Run[None]) -> None:
    # The write buffer goes away each time it drains; a second and a third
    # round of writes the kernel cannot take at once must still all arrive, in
    # order, with pause/resume strictly alternating.
    async def main() -> None:
        server, accepted, client_transport, client = await _serve_one()
        server_transport = _transport_of(accepted)
        server_transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, 4096
        )
        server_transport.set_write_buffer_limits(high=16 * 1024)
        expected = bytearray()
        for round_number in range(3):
            chunk = bytes([65 + round_number]) * 50_000
            # At least 8 writes, and more until the kernel refuses some: once the first
            # round has run, the receiver's buffer may have grown to take 8 at once (it
            # does in debug mode, where every turn of the loop is slower).
            writes = 0
            while writes < 8 or (not server_transport.get_write_buffer_size() and writes < 400):
                server_transport.write(chunk)
                expected += chunk
                writes += 1
            assert server_transport.get_write_buffer_size() > 0
            while len(client.data) < len(expected):
                await asyncio.sleep(0.001)
            while server_transport.get_write_buffer_size():
                await asyncio.sleep(0.001)
        assert client.data == expected
        assert accepted.paused == accepted.resumed == 3
        client_transport.close()
        await accepted.lost
        server.close()
        await server.wait_closed()

    run(main())


class RefillOnResume(Recorder):
    """Writes more from resume_writing(), more than the kernel takes at once."""

    def __init__(self, refills: int, chunk: bytes) -> None:
        super().__init__()
        self.refills = refills
        self.chunk = chunk
        self.written = 0

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.refills:
            self.refills -= 1
            assert self.transport is not None
            for _ in range(4):
                self.transport.write(self.chunk)
                self.written += len(self.chunk)


def test_writes_from_resume_writing_after_a_full_drain(run: Run[None]) -> None:
    # resume_writing() runs while the transport empties its buffer; what it
    # writes then must not be lost when the drained buffer is let go.
    async def main() -> None:
        loop = asyncio.get_running_loop()
        chunk = b"x" * 40_000
        accepted: list[RefillOnResume] = []

        def factory() -> RefillOnResume:
            accepted.append(RefillOnResume(3, chunk))
            return accepted[-1]

        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client_transport, client = await loop.create_connection(Recorder, "127.0.0.1", port)
        while not accepted:
            await asyncio.sleep(0)
        protocol = accepted[0]
        await protocol.made
        transport = protocol.transport
        assert transport is not None
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        transport.set_write_buffer_limits(high=20_000, low=0)
        for _ in range(4):
            transport.write(chunk)
            protocol.written += len(chunk)
        deadline = loop.time() + 10
        # (Whether the refills themselves have to wait is up to the kernel.)
        while len(client.data) < protocol.written or transport.get_write_buffer_size():
            assert loop.time() < deadline, (len(client.data), protocol.written)
            await asyncio.sleep(0.001)
        assert protocol.resumed >= 1
        assert protocol.paused == protocol.resumed
        assert len(client.data) == protocol.written
        client_transport.close()
        await protocol.lost
        server.close()
        await server.wait_closed()

    run(main())


@pytest.mark.skipif(
    sys.version_info < (3, 12, 1), reason="wait_closed() waits for clients from 3.12.1"
)
def test_wait_closed_ends_when_an_unclosed_client_is_collected(
    run: Run[None], loop_factory: Any
) -> None:
    if loop_factory is asyncio.SelectorEventLoop and sys.version_info < (3, 13):
        pytest.skip("asyncio's transport tells its server only from 3.13")

    # The server holds its clients weakly: a client transport dropped without
    # being closed (a ResourceWarning) must not keep wait_closed() waiting.
    # (Only one that does not read: the loop holds a reading transport.)
    # The protocol and the transport refer to each other, so only the cyclic
    # collector frees them: weak references are cleared before __del__ then.
    async def main() -> None:
        server, accepted, client_transport, client = await _serve_one()
        assert accepted.transport is not None
        accepted.transport.pause_reading()
        server.close()
        waiting = asyncio.ensure_future(server.wait_closed())
        await asyncio.sleep(0.01)
        assert not waiting.done()
        accepted.transport = None  # the test's own reference
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            del accepted
            for _ in range(3):
                await asyncio.sleep(0)
            gc.collect()
        await asyncio.wait_for(waiting, 5)
        client_transport.close()
        await client.lost

    run(main())


def test_accepted_tcp_sockets_have_nodelay(run: Run[None], loop_factory: Any) -> None:
    if loop_factory is asyncio.SelectorEventLoop:
        pytest.skip("asyncio leaves Nagle's algorithm on for accepted sockets")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        accepted, factory = _recording_factory()

        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        clients = [await loop.create_connection(Recorder, "127.0.0.1", port) for _ in range(3)]
        while len(accepted) < 3:
            await asyncio.sleep(0)
        for protocol in accepted:
            await protocol.made
            assert protocol.transport is not None
            sock = protocol.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        for transport, _ in clients:
            transport.close()
        for protocol in accepted:
            await protocol.lost
        server.close()
        await server.wait_closed()

    run(main())


@pytest.mark.parametrize("backlog", [8, 100])
def test_connections_queued_before_serving_are_all_accepted(
    run: Run[None], loop_factory: Any, backlog: int
) -> None:
    # The accept loop takes what the kernel says is queued (on Linux) or
    # accepts until the queue is empty: either way none may be left behind,
    # whether the queue is longer than the server's backlog or not, and
    # connections that arrive while it works are accepted too.  Those queued
    # before the server set TCP_NODELAY on its listening socket get it too.
    async def main() -> None:
        loop = asyncio.get_running_loop()
        accepted, factory = _recording_factory()

        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        address = listener.getsockname()
        server = await loop.create_server(
            factory, sock=listener, backlog=backlog, start_serving=False
        )
        early = [socket.create_connection(address) for _ in range(40)]
        await server.start_serving()
        late = [await loop.create_connection(Recorder, *address) for _ in range(10)]
        deadline = loop.time() + 10
        while len(accepted) < 50:
            assert loop.time() < deadline, len(accepted)
            await asyncio.sleep(0.001)
        for protocol in accepted:
            await protocol.made
            assert protocol.transport is not None
            if loop_factory is not asyncio.SelectorEventLoop:
                sock = protocol.transport.get_extra_info("socket")
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        peers = {protocol.transport.get_extra_info("peername") for protocol in accepted}  # type: ignore[union-attr]
        assert peers == {sock.getsockname() for sock in early} | {
            transport.get_extra_info("sockname") for transport, _ in late
        }
        for sock in early:
            sock.close()
        for transport, _ in late:
            transport.close()
        for protocol in accepted:
            await protocol.lost
        server.close()
        await server.wait_closed()

    run(main())


class CountingSocket(socket.socket):
    """A listening socket whose accept() override must be honoured."""

    accepts = 0

    def accept(self) -> tuple[socket.socket, Any]:
        CountingSocket.accepts += 1
        return super().accept()


def test_a_socket_subclass_accept_override_is_called(run: Run[None]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        accepted, factory = _recording_factory()

        listener = CountingSocket()
        listener.bind(("127.0.0.1", 0))
        CountingSocket.accepts = 0
        server = await loop.create_server(factory, sock=listener)
        transport, _ = await loop.create_connection(Recorder, *listener.getsockname())
        while not accepted:
            await asyncio.sleep(0.001)
        await accepted[0].made
        assert CountingSocket.accepts >= 1
        transport.close()
        await accepted[0].lost
        server.close()
        await server.wait_closed()

    run(main())
