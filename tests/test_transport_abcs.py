"""Every transport is an instance of the asyncio ABCs that asyncio's own is, on both loops.

Code written against asyncio checks ``isinstance(t, asyncio.WriteTransport)``
or catches the ``NotImplementedError`` that an ABC method raises where a
transport cannot do something (``pause_reading()`` on a write pipe); a missing
base class turns that into an ``AttributeError``.  One test per kind of
transport asserts the exact set of ABCs and what the unsupported methods raise,
so the relation stays true if a transport is later rebuilt (as a C type, say).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import Callable, Coroutine
from typing import Any

import slipstream
from tests.test_tls_certs import tls_material

Run = Callable[[Coroutine[Any, Any, Any]], Any]

ABCS: tuple[type[asyncio.BaseTransport], ...] = (
    asyncio.BaseTransport,
    asyncio.ReadTransport,
    asyncio.WriteTransport,
    asyncio.Transport,
    asyncio.DatagramTransport,
    asyncio.SubprocessTransport,
)
STREAM = {asyncio.BaseTransport, asyncio.ReadTransport, asyncio.WriteTransport, asyncio.Transport}
READ_ONLY = {asyncio.BaseTransport, asyncio.ReadTransport}
# The read-side methods a write-only transport inherits from asyncio.ReadTransport.
READ_METHODS = ("pause_reading", "resume_reading", "is_reading")
# What asyncio.WriteTransport has and a datagram endpoint does not do (it has sendto).
STREAM_WRITE_METHODS = ("write", "writelines", "write_eof", "can_write_eof")


def abcs_of(transport: object) -> set[type[asyncio.BaseTransport]]:
    """The asyncio transport ABCs that ``transport`` is an instance of."""
    return {abc for abc in ABCS if isinstance(transport, abc)}


def raised_by(transport: object, names: tuple[str, ...], *args: Any) -> dict[str, str]:
    """For each method name: the type of what calling it raised, or ``"returned"``."""
    outcome = {}
    for name in names:
        try:
            getattr(transport, name)(*args)
        except Exception as exc:
            outcome[name] = type(exc).__name__
        else:
            outcome[name] = "returned"
    return outcome


def not_implemented(names: tuple[str, ...]) -> dict[str, str]:
    """The expected outcome of :func:`raised_by` when every method is an ABC stub."""
    return dict.fromkeys(names, "NotImplementedError")


class Accepting(asyncio.Protocol):
    """A server protocol that hands over the transport the server accepted."""

    def __init__(self, accepted: asyncio.Future[asyncio.Transport]) -> None:
        self.accepted = accepted

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.accepted.set_result(transport)


async def check_stream_pair(unix_path: str | None) -> None:
    """Connect over TCP (or the Unix socket at ``unix_path``); check both ends' ABCs."""
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[asyncio.Transport] = loop.create_future()
    if unix_path is None:
        server = await loop.create_server(lambda: Accepting(accepted), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    else:
        server = await loop.create_unix_server(lambda: Accepting(accepted), unix_path)
        client, _ = await loop.create_unix_connection(asyncio.Protocol, unix_path)
    server_side = await accepted
    assert abcs_of(client) == STREAM
    assert abcs_of(server_side) == STREAM
    assert client.can_write_eof() is True
    client.close()
    server_side.close()
    server.close()
    await server.wait_closed()


def test_tcp_transports_are_transports(run: Run) -> None:
    run(check_stream_pair(None))


def test_unix_socket_transports_are_transports(run: Run) -> None:
    with tempfile.TemporaryDirectory() as directory:
        run(check_stream_pair(os.path.join(directory, "s")))


def test_datagram_transport_is_a_datagram_transport(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )
        expected = STREAM | {asyncio.DatagramTransport}
        if sys.version_info < (3, 12) and not isinstance(loop, slipstream.EventLoop):
            # asyncio 3.11's datagram transport forgot this base (added in 3.12);
            # slipstream has it on every Python.
            expected.discard(asyncio.DatagramTransport)
        assert abcs_of(transport) == expected
        # It is a Transport by asyncio's hierarchy, but a stream write is not its job.
        assert raised_by(transport, STREAM_WRITE_METHODS[:1], b"x") == not_implemented(("write",))
        assert raised_by(transport, ("writelines",), [b"x"]) == not_implemented(("writelines",))
        assert raised_by(transport, STREAM_WRITE_METHODS[2:]) == not_implemented(
            STREAM_WRITE_METHODS[2:]
        )
        transport.close()

    run(main())


def test_pipe_transports(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        read_fd, write_fd = os.pipe()
        reader, _ = await loop.connect_read_pipe(asyncio.Protocol, os.fdopen(read_fd, "rb", 0))
        writer, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(write_fd, "wb", 0))
        assert abcs_of(reader) == READ_ONLY
        assert not hasattr(reader, "write")
        # asyncio's write pipe transport is a full Transport (through its flow-control
        # mixin): the read side exists and says it is not implemented.
        assert abcs_of(writer) == STREAM
        assert raised_by(writer, READ_METHODS) == not_implemented(READ_METHODS)
        writer.write(b"still writable")
        writer.close()
        reader.close()
        await asyncio.sleep(0)

    run(main())


def test_subprocess_transport_and_its_pipes(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.subprocess_exec(
            asyncio.SubprocessProtocol,
            sys.executable,
            "-c",
            "import sys; sys.stdin.read()",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert abcs_of(transport) == {asyncio.BaseTransport, asyncio.SubprocessTransport}
        stdin = transport.get_pipe_transport(0)
        assert abcs_of(stdin) == STREAM
        assert raised_by(stdin, READ_METHODS) == not_implemented(READ_METHODS)
        assert abcs_of(transport.get_pipe_transport(1)) == READ_ONLY
        assert abcs_of(transport.get_pipe_transport(2)) == READ_ONLY
        assert transport.get_pipe_transport(3) is None
        assert isinstance(stdin, asyncio.WriteTransport)
        stdin.close()  # the child reads EOF and exits
        for _ in range(500):
            if transport.get_returncode() is not None:
                break
            await asyncio.sleep(0.01)
        assert transport.get_returncode() == 0
        transport.close()

    run(main())


def test_tls_transports_are_transports(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        material = tls_material()
        server = await loop.create_server(
            asyncio.Protocol, "127.0.0.1", 0, ssl=material.server_context()
        )
        port = server.sockets[0].getsockname()[1]
        client, _ = await loop.create_connection(
            asyncio.Protocol,
            "127.0.0.1",
            port,
            ssl=material.client_context(),
            server_hostname="localhost",
        )
        assert abcs_of(client) == STREAM
        # TLS 1.3 has no half-close: asyncio says so with False and NotImplementedError.
        assert client.can_write_eof() is False
        assert raised_by(client, ("write_eof",)) == not_implemented(("write_eof",))
        client.close()
        server.close()
        await server.wait_closed()

    run(main())


def test_start_tls_transport_is_a_transport(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        material = tls_material()
        upgraded: asyncio.Future[asyncio.Transport | None] = loop.create_future()

        class UpgradeOnConnect(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                assert isinstance(transport, asyncio.Transport)
                task = loop.create_task(
                    loop.start_tls(transport, self, material.server_context(), server_side=True)
                )
                task.add_done_callback(lambda t: upgraded.set_result(t.result()))

        server = await loop.create_server(UpgradeOnConnect, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client, protocol = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        client_tls = await loop.start_tls(
            client, protocol, material.client_context(), server_hostname="localhost"
        )
        assert client_tls is not None
        assert abcs_of(client_tls) == STREAM
        server_tls = await upgraded
        assert server_tls is not None
        assert abcs_of(server_tls) == STREAM
        client_tls.close()
        server_tls.close()
        server.close()
        await server.wait_closed()

    run(main())
