"""The stream socket transport, run on stock asyncio and on slipstream alike.

Every test takes the ``run`` fixture (tests/conftest.py), so it passes on
asyncio's own loop too: what is checked is asyncio's behaviour, not ours.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import tempfile
import warnings
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

Run = Callable[[Coroutine[Any, Any, Any]], Any]


class Recorder(asyncio.Protocol):
    """Records everything the transport does to it."""

    def __init__(self, eof_keeps_open: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.data = bytearray()
        self.events: list[str] = []
        self.made = loop.create_future()
        self.eof = loop.create_future()
        self.lost = loop.create_future()
        self.eof_keeps_open = eof_keeps_open
        self.data_event = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.events.append("made")
        self.made.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.data_event.set()

    def eof_received(self) -> bool:
        self.events.append("eof")
        self.eof.set_result(None)
        return self.eof_keeps_open

    def pause_writing(self) -> None:
        self.events.append("pause_writing")

    def resume_writing(self) -> None:
        self.events.append("resume_writing")

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")
        self.lost.set_result(exc)

    async def read_until(self, size: int) -> bytes:
        while len(self.data) < size:
            self.data_event.clear()
            await asyncio.wait_for(self.data_event.wait(), 5)
        return bytes(self.data)


class Server:
    """A TCP (or Unix) server on a free port whose protocols are kept for inspection."""

    def __init__(self, server: asyncio.Server, protocols: list[Recorder]) -> None:
        self.server = server
        self.protocols = protocols

    @property
    def address(self) -> Any:
        return self.server.sockets[0].getsockname()

    async def aclose(self) -> None:
        """Close the server and every connection it accepted, and let them finish."""
        self.server.close()
        for proto in self.protocols:
            if proto.transport is not None:
                proto.transport.close()
        for proto in self.protocols:
            await proto.lost

    async def accepted(self) -> Recorder:
        while not self.protocols:
            await asyncio.sleep(0.001)
        proto = self.protocols[0]
        await proto.made
        return proto


async def serve(unix_path: str | None = None, **kwargs: Any) -> Server:
    loop = asyncio.get_running_loop()
    protocols: list[Recorder] = []

    def factory() -> Recorder:
        proto = Recorder(**kwargs)
        protocols.append(proto)
        return proto

    if unix_path is None:
        server = await loop.create_server(factory, "127.0.0.1", 0)
    else:
        server = await loop.create_unix_server(factory, unix_path)
    return Server(server, protocols)


async def connect(server: Server, **kwargs: Any) -> tuple[asyncio.Transport, Recorder]:
    loop = asyncio.get_running_loop()
    address = server.address
    if isinstance(address, str):
        transport, proto = await loop.create_unix_connection(lambda: Recorder(**kwargs), address)
    else:
        transport, proto = await loop.create_connection(lambda: Recorder(**kwargs), *address)
    assert isinstance(proto, Recorder)
    return transport, proto


@pytest.fixture
def unix_path() -> Any:
    with tempfile.TemporaryDirectory() as directory:
        yield os.path.join(directory, "sock")


# -- moving bytes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["tcp", "unix"])
def test_echo_and_close(run: Run, family: str, unix_path: str) -> None:
    async def main() -> None:
        server = await serve(unix_path if family == "unix" else None)
        transport, client = await connect(server)
        assert client.events == ["made"]
        transport.write(b"hello ")
        transport.writelines([b"wor", bytearray(b"ld"), memoryview(b"!")])
        peer = await server.accepted()
        assert await peer.read_until(12) == b"hello world!"
        assert peer.transport is not None
        peer.transport.write(b"back")
        assert await client.read_until(4) == b"back"
        transport.close()
        assert transport.is_closing()
        assert await client.lost is None
        await peer.eof
        assert await peer.lost is None
        assert client.events == ["made", "lost"]
        assert peer.events == ["made", "eof", "lost"]
        await server.aclose()
        await server.server.wait_closed()

    run(main())


def test_extra_info(run: Run) -> None:
    async def main() -> None:
        server = await serve()
        transport, _ = await connect(server)
        sock = transport.get_extra_info("socket")
        assert type(sock).__name__ == "TransportSocket"
        assert sock.family == socket.AF_INET
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert transport.get_extra_info("peername") == server.address
        assert transport.get_extra_info("sockname") == sock.getsockname()
        assert transport.get_extra_info("nonexistent", "dflt") == "dflt"
        peer = await server.accepted()
        assert peer.transport is not None
        assert peer.transport.get_extra_info("peername") == sock.getsockname()
        transport.close()
        await server.aclose()

    run(main())


def test_half_close_keeps_the_other_direction_open(run: Run) -> None:
    async def main() -> None:
        server = await serve(eof_keeps_open=True)
        transport, client = await connect(server)
        assert transport.can_write_eof()
        transport.write(b"request")
        transport.write_eof()
        transport.write_eof()  # idempotent
        with pytest.raises(RuntimeError, match=r"Cannot call write\(\) after write_eof\(\)"):
            transport.write(b"more")
        peer = await server.accepted()
        await peer.eof
        assert peer.data == b"request"
        assert peer.transport is not None
        assert not peer.transport.is_closing()
        peer.transport.write(b"response")
        assert await client.read_until(8) == b"response"
        peer.transport.close()
        await client.eof
        assert await client.lost is None
        await server.aclose()

    run(main())


def test_eof_received_returning_false_closes_the_transport(run: Run) -> None:
    async def main() -> None:
        server = await serve(eof_keeps_open=False)
        transport, client = await connect(server)
        transport.write(b"last words")
        transport.write_eof()
        peer = await server.accepted()
        await peer.eof
        assert peer.data == b"last words"
        assert await peer.lost is None  # closed by the transport itself
        assert peer.events == ["made", "eof", "lost"]
        await client.eof  # and the client hears the close
        transport.close()
        assert await client.lost is None
        await server.aclose()

    run(main())


def test_peer_reset_in_the_middle_of_a_write(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        errors: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        server = await serve()
        transport, client = await connect(server)
        peer = await server.accepted()
        assert peer.transport is not None
        transport.pause_reading()  # the client reads nothing: the server's writes back up
        while peer.transport.get_write_buffer_size() == 0:
            peer.transport.write(b"w" * 65536)
            await asyncio.sleep(0)
        sock = transport.get_extra_info("socket")
        # SO_LINGER 0: the close sends a RST with the server's data unread.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        transport.abort()
        await client.lost
        exc = await asyncio.wait_for(peer.lost, 5)
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError)), exc
        assert peer.transport.get_write_buffer_size() == 0
        assert errors == []  # an OSError reaches the protocol, not the exception handler
        await server.aclose()

    run(main())


def test_pause_and_resume_reading(run: Run) -> None:
    async def main() -> None:
        server = await serve()
        transport, _client = await connect(server)
        peer = await server.accepted()
        assert peer.transport is not None
        assert peer.transport.is_reading()
        peer.transport.pause_reading()
        peer.transport.pause_reading()  # idempotent
        assert not peer.transport.is_reading()
        transport.write(b"x" * 1000)
        for _ in range(5):
            await asyncio.sleep(0.01)
        assert peer.data == b""
        peer.transport.resume_reading()
        assert peer.transport.is_reading()
        assert await peer.read_until(1000) == b"x" * 1000
        transport.close()
        await peer.lost
        assert not peer.transport.is_reading()  # closed
        await server.aclose()

    run(main())


def test_write_flow_control(run: Run) -> None:
    async def main() -> None:
        server = await serve()
        transport, client = await connect(server)
        peer = await server.accepted()
        assert peer.transport is not None
        peer.transport.pause_reading()
        assert transport.get_write_buffer_limits() == (16384, 65536)
        transport.set_write_buffer_limits(high=4096)
        assert transport.get_write_buffer_limits() == (1024, 4096)
        chunk = b"z" * 65536
        sent = 0
        while "pause_writing" not in client.events:
            transport.write(chunk)
            sent += len(chunk)
            assert sent < 200_000_000, "the kernel never pushed back"
        assert client.events == ["made", "pause_writing"]
        assert transport.get_write_buffer_size() > 4096
        peer.transport.resume_reading()
        await peer.read_until(sent)
        assert client.events == ["made", "pause_writing", "resume_writing"]
        assert transport.get_write_buffer_size() == 0
        transport.close()
        await server.aclose()

    run(main())


def test_lowering_the_high_water_mark_pauses_at_once(run: Run) -> None:
    async def main() -> None:
        server = await serve()
        transport, client = await connect(server)
        peer = await server.accepted()
        assert peer.transport is not None
        peer.transport.pause_reading()
        while transport.get_write_buffer_size() == 0:
            transport.write(b"y" * 65536)
        transport.set_write_buffer_limits(high=0)
        assert client.events[-1] == "pause_writing"
        transport.abort()
        assert await client.lost is None
        await server.aclose()

    run(main())


@pytest.mark.parametrize(
    ("high", "low", "message"),
    [
        (1, 2, "high (1) must be >= low (2) must be >= 0"),
        (None, -1, "high (-4) must be >= low (-1) must be >= 0"),
        (-1, None, "high (-1) must be >= low (-1) must be >= 0"),
    ],
)
def test_bad_write_buffer_limits(run: Run, high: Any, low: Any, message: str) -> None:
    async def main() -> None:
        server = await serve()
        transport, _ = await connect(server)
        with pytest.raises(ValueError) as info:
            transport.set_write_buffer_limits(high, low)
        assert str(info.value) == message
        transport.close()
        await server.aclose()

    run(main())


def test_flow_control_callback_errors_go_to_the_handler(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        contexts: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: contexts.append(context))
        server = await serve()
        transport, client = await connect(server)
        peer = await server.accepted()
        assert peer.transport is not None
        peer.transport.pause_reading()

        def broken() -> None:
            raise ZeroDivisionError

        client.pause_writing = broken  # type: ignore[method-assign]
        transport.set_write_buffer_limits(high=0)
        while not contexts:
            transport.write(b"w" * 65536)
        assert contexts[0]["message"] == "protocol.pause_writing() failed"
        assert isinstance(contexts[0]["exception"], ZeroDivisionError)
        assert contexts[0]["transport"] is transport
        assert contexts[0]["protocol"] is client
        assert not transport.is_closing()
        transport.abort()
        await server.aclose()

    run(main())


def test_write_argument_checks_and_writes_after_close(run: Run) -> None:
    async def main() -> None:
        server = await serve()
        transport, client = await connect(server)
        with pytest.raises(TypeError, match="data argument must be a bytes-like object, not 'str'"):
            transport.write("text")  # type: ignore[arg-type]
        transport.write(b"")  # nothing
        transport.close()
        transport.close()  # idempotent
        await client.lost
        transport.write(b"into the void")  # ignored, as asyncio does
        assert transport.get_write_buffer_size() == 0
        await server.aclose()

    run(main())


def test_close_flushes_the_buffer_and_abort_drops_it(run: Run) -> None:
    async def main() -> None:
        server = await serve()
        transport, client = await connect(server)
        peer = await server.accepted()
        assert peer.transport is not None
        peer.transport.pause_reading()
        chunk = os.urandom(64 * 1024)
        payload = b""
        while transport.get_write_buffer_size() == 0:
            transport.write(chunk)
            payload += chunk
        transport.close()
        peer.transport.resume_reading()
        assert await peer.read_until(len(payload)) == payload
        assert await client.lost is None
        await peer.lost

        transport, client = await connect(server)
        transport.write(payload)
        transport.abort()
        assert transport.is_closing()
        assert await client.lost is None
        await server.aclose()

    run(main())


def test_protocol_error_closes_the_transport(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        contexts: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: contexts.append(context))
        server = await serve()
        transport, client = await connect(server)

        def broken(data: bytes) -> None:
            raise ZeroDivisionError

        client.data_received = broken  # type: ignore[method-assign]
        peer = await server.accepted()
        assert peer.transport is not None
        peer.transport.write(b"boom")
        exc = await client.lost
        assert isinstance(exc, ZeroDivisionError)
        assert contexts[0]["message"] == "Fatal error: protocol.data_received() call failed."
        assert transport.is_closing()
        await server.aclose()

    run(main())


def test_connection_reset_reaches_connection_lost(run: Run) -> None:
    async def main() -> None:
        server = await serve()
        _transport, client = await connect(server)
        peer = await server.accepted()
        assert peer.transport is not None
        sock = peer.transport.get_extra_info("socket")
        # SO_LINGER 0: closing sends a RST instead of a FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        peer.transport.abort()
        exc = await client.lost
        assert exc is None or isinstance(exc, ConnectionResetError)
        await server.aclose()

    run(main())


# -- protocols ------------------------------------------------------------------------------------


class BufferedRecorder(asyncio.BufferedProtocol):
    def __init__(self) -> None:
        self.buffer = bytearray(100)
        self.received = bytearray()
        self.sizes: list[int] = []
        self.lost = asyncio.get_running_loop().create_future()
        self.eof = False

    def get_buffer(self, sizehint: int) -> memoryview:
        self.sizes.append(sizehint)
        return memoryview(self.buffer)

    def buffer_updated(self, nbytes: int) -> None:
        self.received += self.buffer[:nbytes]

    def eof_received(self) -> None:
        self.eof = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)


def test_buffered_protocol(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await serve()
        _transport, proto = await loop.create_connection(BufferedRecorder, *server.address)
        assert isinstance(proto, BufferedRecorder)
        peer = await server.accepted()
        assert peer.transport is not None
        payload = bytes(range(256)) * 40
        peer.transport.write(payload)
        peer.transport.close()
        await proto.lost
        assert proto.received == payload
        assert proto.eof
        assert set(proto.sizes) == {-1}
        await server.aclose()

    run(main())


def test_set_protocol_switches_between_protocol_kinds(run: Run) -> None:
    async def main() -> None:
        server = await serve()
        transport, first = await connect(server)
        peer = await server.accepted()
        assert peer.transport is not None
        peer.transport.write(b"one")
        await first.read_until(3)
        second = BufferedRecorder()
        transport.set_protocol(second)
        assert transport.get_protocol() is second
        peer.transport.write(b"two")
        while second.received != b"two":
            await asyncio.sleep(0.001)
        third = Recorder()
        transport.set_protocol(third)
        peer.transport.write(b"three")
        assert await third.read_until(5) == b"three"
        assert first.data == b"one"
        transport.close()
        assert await third.lost is None
        await server.aclose()

    run(main())


def test_empty_get_buffer_is_a_fatal_error(run: Run) -> None:
    class Empty(BufferedRecorder):
        def get_buffer(self, sizehint: int) -> memoryview:
            return memoryview(bytearray())

    async def main() -> None:
        loop = asyncio.get_running_loop()
        contexts: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: contexts.append(context))
        server = await serve()
        _transport, proto = await loop.create_connection(Empty, *server.address)
        peer = await server.accepted()
        assert peer.transport is not None
        peer.transport.write(b"data")
        assert isinstance(proto, Empty)
        exc = await proto.lost
        assert isinstance(exc, RuntimeError)
        assert str(exc) == "get_buffer() returned an empty buffer"
        assert contexts[0]["message"] == "Fatal error: protocol.get_buffer() call failed."
        await server.aclose()

    run(main())


# -- ownership and lifetime -----------------------------------------------------------------------


def test_add_reader_on_a_transport_fd_is_refused(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await serve()
        transport, client = await connect(server)
        fd = transport.get_extra_info("socket").fileno()
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.add_reader(fd, lambda: None)
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.remove_writer(fd)
        transport.close()
        await client.lost
        await server.aclose()

    run(main())


def test_unclosed_transport_warns(run: Run) -> None:
    async def main() -> None:
        server = await serve()
        transport, client = await connect(server)
        # Paused, so that nothing in the loop refers to it any more.
        transport.pause_reading()
        client.transport = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del transport
            gc.collect()
        messages = [str(w.message) for w in caught if w.category is ResourceWarning]
        assert any(m.startswith("unclosed transport <") for m in messages), messages
        await server.aclose()

    run(main())
