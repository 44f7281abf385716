"""The ``sock_*`` coroutines, on stock asyncio and on slipstream alike."""

from __future__ import annotations

import array
import asyncio
import hashlib
import io
import os
import socket
import ssl
import tempfile
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

Run = Callable[[Coroutine[Any, Any, Any]], Any]

PAYLOAD_SIZE = 10 * 1024 * 1024


def nonblocking_pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def test_sendall_and_recv_move_10_mib_without_loss(run: Run) -> None:
    payload = os.urandom(PAYLOAD_SIZE)

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        a, b = nonblocking_pair()
        with a, b:
            async def send() -> None:
                await loop.sock_sendall(a, payload)
                a.shutdown(socket.SHUT_WR)

            sender = asyncio.create_task(send())
            digest = hashlib.sha256()
            received = 0
            while chunk := await loop.sock_recv(b, 65536):
                digest.update(chunk)
                received += len(chunk)
            await sender
            assert received == PAYLOAD_SIZE
            return digest.digest()

    assert run(main()) == hashlib.sha256(payload).digest()


def test_sendall_and_recv_into_move_10_mib_without_loss(run: Run) -> None:
    payload = os.urandom(PAYLOAD_SIZE)

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        a, b = nonblocking_pair()
        received = bytearray(PAYLOAD_SIZE)
        view = memoryview(received)
        with a, b:
            sender = asyncio.create_task(loop.sock_sendall(a, memoryview(payload)))
            offset = 0
            while offset < PAYLOAD_SIZE:
                count = await loop.sock_recv_into(b, view[offset:offset + 100_000])
                assert count > 0
                offset += count
            await sender
        return bytes(received)

    assert run(main()) == payload


def test_sendall_counts_bytes_not_items(run: Run, loop_factory: Any) -> None:
    # asyncio compares the bytes sent with len(data), which counts items for an
    # array of ints, and then waits forever: slipstream counts bytes.
    if loop_factory is asyncio.SelectorEventLoop:
        pytest.skip("asyncio hangs on a buffer whose items are wider than a byte")
    data = array.array("i", range(300_000))  # 1.2 MB: more than the socket buffer

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        a, b = nonblocking_pair()
        with a, b:
            sender = asyncio.create_task(loop.sock_sendall(a, data))
            chunks = []
            total = 0
            while total < len(data) * data.itemsize:
                chunk = await loop.sock_recv(b, 65536)
                chunks.append(chunk)
                total += len(chunk)
            await sender
        return b"".join(chunks)

    assert run(main()) == data.tobytes()


def test_cancelled_recv_unregisters_and_loses_nothing(run: Run) -> None:
    async def main() -> tuple[bool, bytes]:
        loop = asyncio.get_running_loop()
        a, b = nonblocking_pair()
        with a, b:
            pending = asyncio.create_task(loop.sock_recv(b, 1024))
            await asyncio.sleep(0)
            pending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await pending
            await asyncio.sleep(0)  # let the future's done-callbacks run
            still_watched = loop.remove_reader(b.fileno())
            a.send(b"hello")
            return still_watched, await loop.sock_recv(b, 1024)

    assert run(main()) == (False, b"hello")


def test_cancelled_recv_into_leaves_the_buffer_alone(run: Run) -> None:
    async def main() -> tuple[bytes, bytes]:
        loop = asyncio.get_running_loop()
        a, b = nonblocking_pair()
        first = bytearray(16)
        second = bytearray(16)
        with a, b:
            pending = asyncio.create_task(loop.sock_recv_into(b, first))
            await asyncio.sleep(0)
            pending.cancel()
            a.send(b"data")
            count = await loop.sock_recv_into(b, second)
        return bytes(first), bytes(second[:count])

    assert run(main()) == (bytes(16), b"data")


def test_sendall_after_a_cancelled_sendall_still_completes(run: Run) -> None:
    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        a, b = nonblocking_pair()
        with a, b:
            a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            filler = 0
            with pytest.raises(BlockingIOError):
                while True:
                    filler += a.send(b" " * 4096)
            blocked = asyncio.create_task(loop.sock_sendall(a, b"lost?"))
            await asyncio.sleep(0)
            blocked.cancel()

            async def drain() -> bytes:
                data = b""
                while chunk := await loop.sock_recv(b, 65536):
                    data += chunk
                return data

            reader = asyncio.create_task(drain())
            # Registered before the cancelled call's done-callback runs: that
            # callback must not unregister this one.
            await loop.sock_sendall(a, b"world")
            a.shutdown(socket.SHUT_WR)
            return (await reader).strip(b" ")

    assert run(main()).endswith(b"world")


def test_blocking_sockets_are_rejected_in_debug_mode(run: Run) -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        a, b = socket.socketpair()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        messages = []
        with a, b, u:
            calls = [
                loop.sock_recv(a, 10),
                loop.sock_recv_into(a, bytearray(10)),
                loop.sock_sendall(a, b"x"),
                loop.sock_accept(a),
                loop.sock_connect(a, ("127.0.0.1", 9)),
                loop.sock_recvfrom(u, 10),
                loop.sock_recvfrom_into(u, bytearray(10)),
                loop.sock_sendto(u, b"x", ("127.0.0.1", 9)),
            ]
            for call in calls:
                with pytest.raises(ValueError) as info:
                    await call
                messages.append(str(info.value))
        return messages

    assert run(main()) == ["the socket must be non-blocking"] * 8


def test_blocking_sockets_are_accepted_outside_debug_mode(run: Run) -> None:
    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        loop.set_debug(False)  # as the name says, even under PYTHONASYNCIODEBUG=1
        a, b = socket.socketpair()
        with a, b:
            await loop.sock_sendall(a, b"ping")
            return await loop.sock_recv(b, 10)

    assert run(main()) == b"ping"


def test_tls_sockets_are_rejected(run: Run) -> None:
    async def main() -> str:
        loop = asyncio.get_running_loop()
        context = ssl.create_default_context()
        with context.wrap_socket(
            socket.socket(), server_hostname="example.com", do_handshake_on_connect=False
        ) as tls, pytest.raises(TypeError) as info:
            await loop.sock_recv(tls, 10)
        return str(info.value)

    assert run(main()) == "Socket cannot be of type SSLSocket"


def test_accept_returns_a_nonblocking_socket_and_the_peer_address(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with socket.socket() as listener, socket.socket() as client:
            listener.setblocking(False)
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            client.setblocking(False)
            accepting = asyncio.create_task(loop.sock_accept(listener))
            await asyncio.sleep(0)
            assert not accepting.done()
            await loop.sock_connect(client, listener.getsockname())
            conn, address = await accepting
            with conn:
                assert conn.gettimeout() == 0
                assert address == client.getsockname()
                await loop.sock_sendall(conn, b"hi")
                assert await loop.sock_recv(client, 10) == b"hi"

    run(main())


def test_connect_resolves_a_host_name(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with socket.socket() as listener, socket.socket() as client:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            client.setblocking(False)
            await loop.sock_connect(client, ("localhost", listener.getsockname()[1]))
            assert client.getpeername() == listener.getsockname()

    run(main())


def test_connect_to_a_closed_port_is_refused(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            address = probe.getsockname()
        with socket.socket() as client:
            client.setblocking(False)
            with pytest.raises(ConnectionRefusedError):
                await loop.sock_connect(client, address)

    run(main())


def test_unix_socket_round_trip(run: Run) -> None:
    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "sock")
            with socket.socket(socket.AF_UNIX) as listener, socket.socket(socket.AF_UNIX) as client:
                listener.setblocking(False)
                listener.bind(path)
                listener.listen()
                client.setblocking(False)
                await loop.sock_connect(client, path)
                conn, _ = await loop.sock_accept(listener)
                with conn:
                    await loop.sock_sendall(client, b"over unix")
                    return await loop.sock_recv(conn, 100)

    assert run(main()) == b"over unix"


def test_datagram_calls(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
            for s in (a, b):
                s.setblocking(False)
                s.bind(("127.0.0.1", 0))
            waiting = asyncio.create_task(loop.sock_recvfrom(b, 100))
            await asyncio.sleep(0)
            assert await loop.sock_sendto(a, b"one", b.getsockname()) == 3
            assert await waiting == (b"one", a.getsockname())

            buf = bytearray(8)
            await loop.sock_sendto(a, b"twotwotwo", b.getsockname())
            assert await loop.sock_recvfrom_into(b, buf, 3) == (3, a.getsockname())
            assert buf[:3] == b"two"

            with pytest.raises(ValueError) as info:
                await loop.sock_recvfrom_into(b, buf, 9)
            assert str(info.value) == "nbytes is greater than the length of the buffer"

    run(main())


def test_waiting_on_a_transport_socket_is_refused(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=sock)
        try:
            with pytest.raises(RuntimeError, match="is used by transport"):
                await loop.sock_recv(sock, 10)
        finally:
            transport.close()
        await asyncio.sleep(0)

    run(main())


def test_sock_sendfile_native_and_fallback(run: Run) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)

    async def send_and_receive(file: Any, offset: int, count: int | None,
                               fallback: bool = True) -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        a, b = nonblocking_pair()
        with a, b:
            async def send() -> int:
                try:
                    return await loop.sock_sendfile(a, file, offset, count, fallback=fallback)
                finally:
                    a.shutdown(socket.SHUT_WR)

            sender = asyncio.create_task(send())
            chunks = []
            while chunk := await loop.sock_recv(b, 65536):
                chunks.append(chunk)
            return await sender, b"".join(chunks)

    async def main() -> None:
        with tempfile.TemporaryFile() as file:
            file.write(payload)
            file.seek(0)
            assert await send_and_receive(file, 0, None) == (len(payload), payload)
            assert file.tell() == len(payload)
            assert await send_and_receive(file, 1000, 5000) == (5000, payload[1000:6000])
            assert file.tell() == 6000
        # No descriptor: read in a thread and sent with sock_sendall.
        memory = io.BytesIO(payload)
        assert await send_and_receive(memory, 10, None) == (len(payload) - 10, payload[10:])
        assert memory.tell() == len(payload)
        with pytest.raises(asyncio.SendfileNotAvailableError):
            await send_and_receive(io.BytesIO(payload), 0, None, fallback=False)

    run(main())


def test_sock_sendfile_argument_errors(run: Run) -> None:
    async def main() -> list[tuple[type[BaseException], str]]:
        loop = asyncio.get_running_loop()
        errors: list[tuple[type[BaseException], str]] = []
        a, b = nonblocking_pair()
        with a, b, tempfile.TemporaryFile() as binary, \
                tempfile.TemporaryFile("w") as text, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.setblocking(False)  # so that debug mode's non-blocking check passes too
            cases: list[tuple[socket.socket, Any, Any, Any]] = [
                (a, text, 0, None), (udp, binary, 0, None), (a, binary, 0, 0),
                (a, binary, 0, "1"), (a, binary, -1, None), (a, binary, 1.0, None),
            ]
            for sock, file, offset, count in cases:
                try:
                    await loop.sock_sendfile(sock, file, offset, count)
                except (TypeError, ValueError) as exc:
                    errors.append((type(exc), str(exc)))
        return errors

    assert run(main()) == [
        (ValueError, "file should be opened in binary mode"),
        (ValueError, "only SOCK_STREAM type sockets are supported"),
        (ValueError, "count must be a positive integer (got 0)"),
        (TypeError, "count must be a positive integer (got '1')"),
        (ValueError, "offset must be a non-negative integer (got -1)"),
        (TypeError, "offset must be a non-negative integer (got 1.0)"),
    ]


def test_sock_recv_after_a_drained_read_still_sees_every_byte(run: Run) -> None:
    # The second receive of each pair skips the speculative recv() (the first
    # one emptied the socket); data, EOF and odd sizes must come out the same.
    async def main() -> None:
        loop = asyncio.get_running_loop()
        left, right = nonblocking_pair()
        with left, right:
            for size in (1, 10, 1000):
                reader = loop.create_task(loop.sock_recv(left, 65536))
                await asyncio.sleep(0)
                await loop.sock_sendall(right, b"x" * size)
                assert await reader == b"x" * size
            await loop.sock_sendall(right, b"queued")
            await asyncio.sleep(0.01)
            assert await loop.sock_recv(left, 65536) == b"queued"  # waits, then reads
            assert await loop.sock_recv(left, 0) == b""  # at once, as recv(0) does
            with pytest.raises(ValueError):
                await loop.sock_recv(left, -1)
            with pytest.raises(TypeError):
                await loop.sock_recv(left, "10")  # type: ignore[arg-type]
            await loop.sock_sendall(right, b"ab")
            assert await loop.sock_recv(left, 1) == b"a"  # a full read: more may wait
            assert await loop.sock_recv(left, 1) == b"b"
            right.shutdown(socket.SHUT_WR)
            assert await loop.sock_recv(left, 100) == b""

    run(main())
