"""create_connection / create_server and their Unix twins, on asyncio and slipstream alike.

Bad arguments must raise asyncio's exception with asyncio's message; servers
must live and die as asyncio's do.  Each test runs on both loops (the ``run``
fixture), so the expectations written here are checked against asyncio itself.
"""

from __future__ import annotations

import asyncio
import errno
import os
import resource
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

Run = Callable[[Coroutine[Any, Any, Any]], Any]
PY312 = sys.version_info >= (3, 12)
PY313 = sys.version_info >= (3, 13)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def unix_path() -> Any:
    with tempfile.TemporaryDirectory() as directory:
        yield os.path.join(directory, "sock")


def expect_error(run: Run, make: Callable[[Any], Any],
                 exc_type: type[BaseException], message: str) -> None:
    async def main() -> None:
        with pytest.raises(exc_type) as info:
            await make(asyncio.get_running_loop())
        assert str(info.value) == message

    run(main())


# -- argument checking ----------------------------------------------------------------------------

P = asyncio.Protocol
UDP = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
TCP = socket.socket()


@pytest.fixture(scope="module", autouse=True)
def _close_module_sockets() -> Any:
    yield
    UDP.close()
    TCP.close()


BAD_CALLS: list[tuple[str, Callable[[Any], Any], type, str]] = [
    ("hostname without ssl", lambda lp: lp.create_connection(P, "h", 1, server_hostname="h"),
     ValueError, "server_hostname is only meaningful with ssl"),
    ("ssl without host", lambda lp: lp.create_connection(P, None, 1, ssl=True),
     ValueError, "You must set server_hostname when using ssl without a host"),
    ("handshake timeout without ssl",
     lambda lp: lp.create_connection(P, "h", 1, ssl_handshake_timeout=1),
     ValueError, "ssl_handshake_timeout is only meaningful with ssl"),
    ("shutdown timeout without ssl",
     lambda lp: lp.create_connection(P, "h", 1, ssl_shutdown_timeout=1),
     ValueError, "ssl_shutdown_timeout is only meaningful with ssl"),
    ("host and sock", lambda lp: lp.create_connection(P, "h", 1, sock=TCP),
     ValueError, "host/port and sock can not be specified at the same time"),
    ("nothing to connect", lambda lp: lp.create_connection(P),
     ValueError, "host and port was not specified and no sock specified"),
    ("udp sock", lambda lp: lp.create_connection(P, sock=UDP),
     ValueError, f"A Stream Socket was expected, got {UDP!r}"),
    ("server ssl=True", lambda lp: lp.create_server(P, "127.0.0.1", 0, ssl=True),
     TypeError, "ssl argument must be an SSLContext or None"),
    ("server handshake timeout", lambda lp: lp.create_server(P, port=0, ssl_handshake_timeout=1),
     ValueError, "ssl_handshake_timeout is only meaningful with ssl"),
    ("server host and sock", lambda lp: lp.create_server(P, "h", sock=TCP),
     ValueError, "host/port and sock can not be specified at the same time"),
    ("server nothing", lambda lp: lp.create_server(P),
     ValueError, "Neither host/port nor sock were specified"),
    ("server udp sock", lambda lp: lp.create_server(P, sock=UDP),
     ValueError, f"A Stream Socket was expected, got {UDP!r}"),
    ("accepted udp", lambda lp: lp.connect_accepted_socket(P, UDP),
     ValueError, f"A Stream Socket was expected, got {UDP!r}"),
    ("accepted handshake timeout",
     lambda lp: lp.connect_accepted_socket(P, TCP, ssl_handshake_timeout=1),
     ValueError, "ssl_handshake_timeout is only meaningful with ssl"),
    ("unix ssl without hostname", lambda lp: lp.create_unix_connection(P, "/x", ssl=True),
     ValueError, "you have to pass server_hostname when using ssl"),
    ("unix hostname without ssl",
     lambda lp: lp.create_unix_connection(P, "/x", server_hostname="h"),
     ValueError, "server_hostname is only meaningful with ssl"),
    ("unix path and sock", lambda lp: lp.create_unix_connection(P, "/x", sock=TCP),
     ValueError, "path and sock can not be specified at the same time"),
    ("unix nothing", lambda lp: lp.create_unix_connection(P),
     ValueError, "no path and sock were specified"),
    ("unix tcp sock", lambda lp: lp.create_unix_connection(P, sock=TCP),
     ValueError, f"A UNIX Domain Stream Socket was expected, got {TCP!r}"),
    ("unix server ssl=True", lambda lp: lp.create_unix_server(P, "/x", ssl=True),
     TypeError, "ssl argument must be an SSLContext or None"),
    ("unix server nothing", lambda lp: lp.create_unix_server(P),
     ValueError, "path was not specified, and no sock specified"),
    ("unix server path and sock", lambda lp: lp.create_unix_server(P, "/x", sock=TCP),
     ValueError, "path and sock can not be specified at the same time"),
    ("unix server tcp sock", lambda lp: lp.create_unix_server(P, sock=TCP),
     ValueError, f"A UNIX Domain Stream Socket was expected, got {TCP!r}"),
]


@pytest.mark.parametrize(
    ("make", "exc_type", "message"),
    [case[1:] for case in BAD_CALLS],
    ids=[case[0] for case in BAD_CALLS],
)
def test_bad_arguments(run: Run, make: Any, exc_type: type, message: str) -> None:
    expect_error(run, make, exc_type, message)


# -- connecting -----------------------------------------------------------------------------------


def refused_port_addresses(loop: asyncio.AbstractEventLoop, port: int) -> None:
    """Make ``loop.getaddrinfo`` answer two loopback addresses, both refusing."""

    async def getaddrinfo(host: Any, p: Any, **kwargs: Any) -> list[Any]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port)),
        ]

    loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign, assignment]


def test_connection_refused(run: Run) -> None:
    port = free_port()
    expect_error(
        run, lambda lp: lp.create_connection(P, "127.0.0.1", port),
        ConnectionRefusedError, f"[Errno {errno.ECONNREFUSED}] Connect call failed "
        f"('127.0.0.1', {port})",
    )


def test_every_address_is_tried_and_errors_combined(run: Run) -> None:
    port = free_port()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        refused_port_addresses(loop, port)
        with pytest.raises(OSError) as info:
            await loop.create_connection(P, "example", port)
        assert str(info.value) == (
            f"Multiple exceptions: [Errno {errno.ECONNREFUSED}] Connect call failed "
            f"('127.0.0.1', {port}), [Errno {errno.ECONNREFUSED}] Connect call failed "
            f"('127.0.0.2', {port})"
        )
        if PY312:
            with pytest.raises(ExceptionGroup) as group:
                await loop.create_connection(  # type: ignore[call-overload, unused-ignore]
                    P, "example", port, all_errors=True
                )
            assert len(group.value.exceptions) == 2

    run(main())


def test_local_addr_errors(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            address = listener.getsockname()
            with pytest.raises(OSError) as info:
                await loop.create_connection(P, *address, local_addr=address)
            assert info.value.errno == errno.EADDRINUSE
            assert (info.value.strerror or "").startswith(
                f"error while attempting to bind on address {address!r}: "
            )
            with pytest.raises(OSError) as info:
                await loop.create_connection(P, *address, local_addr=("::1", 0))
            assert str(info.value) == (
                f"no matching local address with family={socket.AF_INET!r} found"
            )

    run(main())


def test_happy_eyeballs_skips_a_stalled_address(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(P, "127.0.0.1", 0)
        good = server.sockets[0].getsockname()
        # A listener whose accept queue is full: the kernel drops new SYNs, so
        # a connect to it just hangs.
        stalled = socket.socket()
        stalled.bind(("127.0.0.1", 0))
        stalled.listen(0)
        fillers = []
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(stalled.getsockname())
            fillers.append(filler)
        await asyncio.sleep(0.05)

        async def getaddrinfo(*args: Any, **kwargs: Any) -> list[Any]:
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", stalled.getsockname()),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", good),
            ]

        loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
        started = time.monotonic()
        transport, _ = await asyncio.wait_for(
            loop.create_connection(P, "example", 1, happy_eyeballs_delay=0.05), 5
        )
        assert time.monotonic() - started < 2
        assert transport.get_extra_info("peername") == good
        transport.close()
        for filler in fillers:
            filler.close()
        stalled.close()
        server.close()

    run(main())


def test_happy_eyeballs_all_failing_and_cancelled(run: Run) -> None:
    port = free_port()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        refused_port_addresses(loop, port)
        with pytest.raises(OSError, match=r"^Multiple exceptions: "):
            await loop.create_connection(P, "example", port, happy_eyeballs_delay=0.01)
        # Cancelled while an attempt hangs: the attempt's socket is closed.
        stalled = socket.socket()
        stalled.bind(("127.0.0.1", 0))
        stalled.listen(0)
        fillers = [socket.socket() for _ in range(3)]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(stalled.getsockname())

        async def getaddrinfo(*args: Any, **kwargs: Any) -> list[Any]:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", stalled.getsockname())] * 2

        loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(
                loop.create_connection(P, "example", 1, happy_eyeballs_delay=0.01), 0.1
            )
        for filler in fillers:
            filler.close()
        stalled.close()

    run(main())


def test_connect_accepted_socket(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        received = loop.create_future()

        class Echo(asyncio.Protocol):
            def data_received(self, data: bytes) -> None:
                received.set_result(data)

        transport, _ = await loop.connect_accepted_socket(Echo, a)
        b.sendall(b"ping")
        assert await received == b"ping"
        transport.close()
        b.close()

    run(main())


# -- servers --------------------------------------------------------------------------------------


def test_server_lifecycle(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(P, "127.0.0.1", 0, start_serving=False)
        assert server.get_loop() is loop
        assert not server.is_serving()
        [listener] = server.sockets
        assert type(listener).__name__ == "TransportSocket"
        assert repr(server) == f"<Server sockets=({listener!r},)>"
        await server.start_serving()
        assert server.is_serving()
        transport, _ = await loop.create_connection(P, *listener.getsockname())
        transport.close()
        forever = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="is already being awaited on serve_forever"):
            await server.serve_forever()
        forever.cancel()
        with pytest.raises(asyncio.CancelledError):
            await forever
        assert not server.is_serving()
        assert server.sockets == ()
        with pytest.raises(RuntimeError, match=r"server .* is closed"):
            await server.serve_forever()
        await server.wait_closed()
        server.close()  # idempotent

    run(main())


def test_server_async_with(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with await loop.create_server(P, "127.0.0.1", 0) as server:
            assert server.is_serving()
        assert not server.is_serving()

    run(main())


def test_wait_closed_waits_for_clients_from_312(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        accepted: list[asyncio.BaseTransport] = []

        class Keep(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                accepted.append(transport)

        server = await loop.create_server(Keep, "127.0.0.1", 0)
        transport, _ = await loop.create_connection(P, *server.sockets[0].getsockname())
        while not accepted:
            await asyncio.sleep(0.001)
        server.close()
        waiting = asyncio.ensure_future(server.wait_closed())
        await asyncio.sleep(0.01)
        # 3.11 returns at once for a closed server; 3.12.1+ waits for the client.
        assert waiting.done() is (not PY312)
        accepted[0].close()
        await asyncio.wait_for(waiting, 5)
        transport.close()

    run(main())


@pytest.mark.skipif(not PY313, reason="close_clients/abort_clients are new in 3.13")
@pytest.mark.parametrize("method", ["close_clients", "abort_clients"])
def test_close_and_abort_clients(run: Run, method: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        lost = loop.create_future()

        class Client(asyncio.Protocol):
            def connection_lost(self, exc: Exception | None) -> None:
                lost.set_result(exc)

        await loop.create_connection(Client, *server.sockets[0].getsockname())
        await asyncio.sleep(0.01)
        server.close()
        getattr(server, method)()
        await asyncio.wait_for(server.wait_closed(), 5)
        await asyncio.wait_for(lost, 5)

    run(main())


def test_server_on_several_hosts_and_sock(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(P, ["127.0.0.1", "127.0.0.1", "localhost"], 0,
                                          family=socket.AF_INET)
        # A host given twice (or by two names) is bound once.
        assert len(server.sockets) == 1
        server.close()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            server = await loop.create_server(P, sock=sock)
            assert server.sockets[0].getsockname() == sock.getsockname()
            server.close()

    run(main())


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_dual_stack_server_is_v6only(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(P, ["127.0.0.1", "::1"], 0)
        except OSError:
            pytest.skip("::1 not available")
        for sock in server.sockets:
            if sock.family == socket.AF_INET6:
                assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
        assert {s.family for s in server.sockets} == {socket.AF_INET, socket.AF_INET6}
        server.close()

    run(main())


def test_server_address_in_use(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        first = await loop.create_server(P, "127.0.0.1", 0, reuse_address=False)
        address = first.sockets[0].getsockname()
        with pytest.raises(OSError) as info:
            await loop.create_server(P, *address, reuse_address=False)
        assert info.value.errno == errno.EADDRINUSE
        assert (info.value.strerror or "").startswith(
            f"error while attempting to bind on address {address!r}: "
        )
        first.close()

    run(main())


def test_reuse_port(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        first = await loop.create_server(P, "127.0.0.1", 0, reuse_port=True)
        port = first.sockets[0].getsockname()[1]
        second = await loop.create_server(P, "127.0.0.1", port, reuse_port=True)
        assert second.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        first.close()
        second.close()

    run(main())


# -- Unix servers ---------------------------------------------------------------------------------


def test_unix_server_replaces_a_stale_socket_file(run: Run, unix_path: str) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(unix_path)
    stale.close()  # the file stays behind

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_unix_server(P, unix_path)
        transport, _ = await loop.create_unix_connection(P, unix_path)
        transport.close()
        server.close()
        # 3.13 removes the socket file on close; earlier versions leave it.
        assert os.path.exists(unix_path) is (not PY313)

    run(main())


def test_unix_server_refuses_a_path_in_use(run: Run, unix_path: str) -> None:
    with open(unix_path, "w"):
        pass  # a regular file: never removed

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with pytest.raises(OSError) as info:
            await loop.create_unix_server(P, unix_path)
        assert info.value.errno == errno.EADDRINUSE
        assert str(info.value) == f"[Errno 98] Address {unix_path!r} is already in use"

    run(main())


@pytest.mark.skipif(not PY313, reason="cleanup_socket is new in 3.13")
def test_unix_server_cleanup_only_of_its_own_file(run: Run, unix_path: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_unix_server(P, unix_path)
        os.unlink(unix_path)
        with socket.socket(socket.AF_UNIX) as other:
            other.bind(unix_path)
            server.close()
            assert os.path.exists(unix_path)
        os.unlink(unix_path)
        server = await loop.create_unix_server(  # type: ignore[call-arg, unused-ignore]
            P, unix_path, cleanup_socket=False
        )
        server.close()
        assert os.path.exists(unix_path)

    run(main())


# -- accepting ------------------------------------------------------------------------------------


def test_accept_out_of_descriptors_pauses_and_reports(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        contexts: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: contexts.append(context))
        class Closer(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                transport.close()

        server = await loop.create_server(Closer, "127.0.0.1", 0)
        address = server.sockets[0].getsockname()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        client = socket.socket()
        client.setblocking(False)
        # Let the process have no descriptor left for accept() to return.
        spare = [os.open(os.devnull, os.O_RDONLY)]
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(spare) + 1, hard))
        try:
            while True:
                try:
                    spare.append(os.open(os.devnull, os.O_RDONLY))
                except OSError:
                    break
            client.connect_ex(address)
            for _ in range(50):
                await asyncio.sleep(0.01)
                if contexts:
                    break
        finally:
            for fd in spare:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert contexts, "accept() never failed"
        assert contexts[0]["message"] == "socket.accept() out of system resource"
        assert contexts[0]["exception"].errno == errno.EMFILE
        assert len(contexts) <= 100  # at most one per connection of the backlog
        # Accepting resumes after a pause (asyncio: one second).
        await asyncio.sleep(1.2)
        client.close()
        server.close()

    run(main())
