"""Datagram endpoints and their transport, on stock asyncio and on slipstream alike."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

Run = Callable[[Coroutine[Any, Any, Any]], Any]


class Recorder(asyncio.DatagramProtocol):
    """Records every protocol call; ``received`` is fed by ``datagram_received``."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.received: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue()
        self.errors: list[Exception] = []
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.events.append("made")
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.put_nowait((data, addr))

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")
        self.lost.set_result(exc)


class Echo(Recorder):
    def datagram_received(self, data: bytes, addr: Any) -> None:
        super().datagram_received(data, addr)
        self.transport.sendto(b"echo:" + data, addr)


def test_udp_echo_with_a_connected_client(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server_transport, server = await loop.create_datagram_endpoint(
            Echo, local_addr=("127.0.0.1", 0)
        )
        address = server_transport.get_extra_info("sockname")
        transport, client = await loop.create_datagram_endpoint(Recorder, remote_addr=address)
        assert client.events == ["made"]
        assert isinstance(transport, asyncio.Transport)
        assert transport.get_extra_info("peername") == address
        sock = transport.get_extra_info("socket")
        assert sock.getsockname() == transport.get_extra_info("sockname")
        assert sock.type == socket.SOCK_DGRAM

        transport.sendto(b"ping")
        assert await client.received.get() == (b"echo:ping", address)
        data, source = await server.received.get()
        assert (data, source) == (b"ping", transport.get_extra_info("sockname"))

        # A connected transport sends only to its peer.
        transport.sendto(b"again", address)
        assert await client.received.get() == (b"echo:again", address)
        with pytest.raises(ValueError) as info:
            transport.sendto(b"elsewhere", ("127.0.0.1", 9))
        assert str(info.value) == f"Invalid address: must be None or {address}"
        with pytest.raises(TypeError) as type_info:
            transport.sendto("text")  # type: ignore[arg-type]
        assert str(type_info.value) == "data argument must be a bytes-like object, not 'str'"

        transport.close()
        assert transport.is_closing()
        assert await client.lost is None
        assert client.events == ["made", "lost"]
        assert sock.fileno() == -1
        server_transport.close()
        await server.lost

    run(main())


def test_unconnected_endpoint_sends_anywhere(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        t1, p1 = await loop.create_datagram_endpoint(Recorder, local_addr=("127.0.0.1", 0))
        t2, p2 = await loop.create_datagram_endpoint(Recorder, local_addr=("127.0.0.1", 0))
        assert t1.get_extra_info("peername") is None
        a1, a2 = t1.get_extra_info("sockname"), t2.get_extra_info("sockname")
        t1.sendto(b"to two", a2)
        assert await p2.received.get() == (b"to two", a1)
        t2.sendto(bytearray(b"to one"), a1)
        assert await p1.received.get() == (b"to one", a2)
        t1.close()
        t2.close()
        await p1.lost
        await p2.lost

    run(main())


def test_empty_datagrams_are_sent(run: Run, loop_factory: Any) -> None:
    if loop_factory is asyncio.SelectorEventLoop and sys.version_info < (3, 13):
        pytest.skip("asyncio drops empty datagrams before 3.13")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        t1, p1 = await loop.create_datagram_endpoint(Recorder, local_addr=("127.0.0.1", 0))
        t2, _ = await loop.create_datagram_endpoint(
            Recorder, remote_addr=t1.get_extra_info("sockname")
        )
        t2.sendto(b"")
        assert await p1.received.get() == (b"", t2.get_extra_info("sockname"))
        t1.close()
        t2.close()
        await asyncio.sleep(0)

    run(main())


def test_connected_endpoint_reports_refusals_to_error_received(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()
        transport, client = await loop.create_datagram_endpoint(Recorder, remote_addr=closed_port)
        for _ in range(100):
            transport.sendto(b"anyone?")
            await asyncio.sleep(0.01)
            if client.errors:
                break
        assert client.errors and isinstance(client.errors[0], ConnectionRefusedError)
        assert not transport.is_closing()  # not fatal for a datagram endpoint
        transport.close()
        await client.lost

    run(main())


def test_write_flow_control_pauses_and_resumes(run: Run, loop_factory: Any) -> None:
    # A Unix datagram socket blocks its sender when the receiver's queue is
    # full (UDP would drop instead), which makes the transport buffer.
    # asyncio 3.13 counts 8 bytes more per queued datagram than it gives back.
    leaky_accounting = loop_factory is asyncio.SelectorEventLoop and sys.version_info >= (3, 13)
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "receiver")
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
                receiver.bind(path)
                receiver.setblocking(False)
                transport: Any
                transport, sender = await loop.create_datagram_endpoint(
                    Recorder, remote_addr=path, family=socket.AF_UNIX
                )
                transport.set_write_buffer_limits(high=4096)
                assert transport.get_write_buffer_limits() == (1024, 4096)
                sent = []
                index = 0
                while "pause" not in sender.events:
                    datagram = b"%06d" % index + b"x" * 500
                    transport.sendto(datagram)
                    sent.append(datagram)
                    index += 1
                    assert index < 100_000
                assert transport.get_write_buffer_size() > 4096

                received: list[bytes] = []
                while len(received) < len(sent):
                    try:
                        received.append(receiver.recv(1000))
                    except BlockingIOError:
                        await asyncio.sleep(0.001)
                assert received == sent
                assert sender.events == ["made", "pause", "resume"]
                if not leaky_accounting:
                    assert transport.get_write_buffer_size() == 0
                transport.close()
                assert await sender.lost is None

    run(main())


def test_close_sends_what_is_queued_and_abort_drops_it(run: Run) -> None:
    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        counts = []
        with tempfile.TemporaryDirectory() as directory:
            for index, ending in enumerate(("close", "abort")):
                path = os.path.join(directory, f"receiver{index}")
                with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
                    receiver.bind(path)
                    receiver.setblocking(False)
                    transport: Any
                    transport, sender = await loop.create_datagram_endpoint(
                        Recorder, remote_addr=path, family=socket.AF_UNIX
                    )
                    sent = 0
                    while transport.get_write_buffer_size() == 0:
                        transport.sendto(b"y" * 100)
                        sent += 1
                    transport.sendto(b"last")
                    sent += 1
                    getattr(transport, ending)()
                    received = 0
                    while True:
                        try:
                            receiver.recv(1000)
                            received += 1
                        except BlockingIOError:
                            if sender.lost.done():
                                break  # and the receiver's queue is empty
                            await asyncio.sleep(0.001)
                    counts.append(sent - received)
        return counts[0], counts[1]

    unsent_after_close, unsent_after_abort = run(main())
    assert unsent_after_close == 0
    assert unsent_after_abort > 0


def test_unix_datagram_endpoint_replaces_a_stale_socket_file(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "stale")
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as old:
                old.bind(path)  # closed without unlinking: a stale file
            transport, protocol = await loop.create_datagram_endpoint(
                Recorder, local_addr=path, family=socket.AF_UNIX
            )
            assert transport.get_extra_info("sockname") == path
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
                client.sendto(b"hello", path)
            assert (await protocol.received.get())[0] == b"hello"
            transport.close()
            await protocol.lost

    run(main())


def test_endpoint_on_a_socketpair(run: Run, loop_factory: Any) -> None:
    # An unnamed Unix socket's peer name is "": asyncio then takes the socket
    # for unconnected and fails to send without an address.
    if loop_factory is asyncio.SelectorEventLoop:
        pytest.skip("asyncio cannot send on a socketpair datagram endpoint")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        with b:
            transport, protocol = await loop.create_datagram_endpoint(Recorder, sock=a)
            transport.sendto(b"over the pair")
            assert b.recv(100) == b"over the pair"
            b.send(b"back")
            assert (await protocol.received.get())[0] == b"back"
            transport.close()
            await protocol.lost

    run(main())


def test_transport_owns_its_descriptor(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            Recorder, local_addr=("127.0.0.1", 0)
        )
        fd = transport.get_extra_info("socket").fileno()
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.add_reader(fd, lambda: None)
        transport.close()
        loop.add_reader(fd, lambda: None)  # a closing transport no longer owns it
        loop.remove_reader(fd)
        await protocol.lost

    run(main())


def test_pause_and_resume_reading(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport: Any
        transport, protocol = await loop.create_datagram_endpoint(
            Recorder, local_addr=("127.0.0.1", 0)
        )
        address = transport.get_extra_info("sockname")
        assert transport.is_reading()
        transport.pause_reading()
        assert not transport.is_reading()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(b"held", address)
            await asyncio.sleep(0.05)
            assert protocol.received.empty()
            transport.resume_reading()
            assert (await protocol.received.get())[0] == b"held"
        transport.close()
        assert not transport.is_reading()
        await protocol.lost

    run(main())


def argument_error(run: Run, **kwargs: Any) -> tuple[type[BaseException], str]:
    async def main() -> tuple[type[BaseException], str]:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, **kwargs)
        except Exception as exc:
            return type(exc), str(exc)
        transport.close()
        raise AssertionError("no error")

    result: tuple[type[BaseException], str] = run(main())
    return result


def test_argument_errors(run: Run, loop_factory: Any) -> None:
    assert argument_error(run) == (ValueError, "unexpected address family")
    assert argument_error(run, family=socket.AF_UNIX, local_addr=("a", 1)) == (
        TypeError, "string is expected")
    assert argument_error(run, local_addr="127.0.0.1") == (TypeError, "2-tuple is expected")
    assert argument_error(run, local_addr=("127.0.0.1", 0), remote_addr=("::1", 1)) == (
        ValueError, "can not get address information")
    kind, message = argument_error(run, local_addr=("127.0.0.1", 0), reuse_address=True)
    assert kind is TypeError and "unexpected keyword argument 'reuse_address'" in message

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        assert argument_error(run, sock=sock, local_addr=("127.0.0.1", 0), flags=0, proto=17) == (
            ValueError,
            "socket modifier keyword arguments can not be used when sock is specified. "
            "(local_addr=('127.0.0.1', 0), proto=17)",
        )
    with socket.socket() as stream:
        kind, message = argument_error(run, sock=stream)
        # The wording of CPython gh-114887 (3.11.9, 3.12.2, 3.13); older patch
        # releases of asyncio say "A UDP Socket was expected".
        assert kind is ValueError
        assert message.startswith(("A datagram socket was expected", "A UDP Socket was expected"))
        if loop_factory is not asyncio.SelectorEventLoop:
            assert message.startswith("A datagram socket was expected")


def test_bind_errors_propagate(run: Run) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        kind, message = argument_error(run, local_addr=taken.getsockname())
        assert kind is OSError or issubclass(kind, OSError)
        assert "in use" in message
