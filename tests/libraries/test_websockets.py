"""The ``websockets`` package, client and server on one loop.

websockets is a protocol on a plain transport: it pauses and resumes reading
as its receive queue fills, sets the transport's write-buffer limits and waits
for ``drain``, half-closes with ``write_eof`` and reads the peer's close
frame.  The tests run an echo over TCP, over a Unix socket and over TLS, big
and fragmented messages, ping/pong, close codes, and a 20-client broadcast.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from websockets import ConnectionClosedError, ConnectionClosedOK
from websockets.asyncio.client import ClientConnection, connect, unix_connect
from websockets.asyncio.server import ServerConnection, broadcast, serve, unix_serve

from tests.test_tls_certs import tls_material

Run = Callable[[Coroutine[Any, Any, Any]], Any]
HOST = "127.0.0.1"
MiB = 1024 * 1024


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


def port_of(server: Any) -> int:
    return int(server.sockets[0].getsockname()[1])


def mixed_messages(count: int, seed: int) -> list[str | bytes]:
    rng = random.Random(seed)
    messages: list[str | bytes] = []
    for i in range(count):
        size = rng.choice((0, 1, 125, 126, 4000, 65_536, 20_000))
        messages.append(f"{i}:" + "w" * size if i % 2 else rng.randbytes(size))
    return messages


async def echo_all(ws: ClientConnection, messages: list[str | bytes]) -> list[str | bytes]:
    """Send every message from one task while this one reads the echoes."""

    async def send_all() -> None:
        for message in messages:
            await ws.send(message)

    sender = asyncio.create_task(send_all())
    received = [await ws.recv() for _ in messages]
    await sender
    return received


def test_echo_1000_messages(run: Run) -> None:
    messages = mixed_messages(1000, seed=1)

    async def main() -> None:
        async with serve(echo, HOST, 0, compression=None) as server:
            uri = f"ws://{HOST}:{port_of(server)}"
            async with connect(uri, compression=None, proxy=None) as ws:
                assert await echo_all(ws, messages) == messages
            assert ws.close_code == 1000

    run(main())


def test_big_and_fragmented_messages_and_ping(run: Run) -> None:
    big = random.Random(2).randbytes(4 * MiB)
    pieces = [f"part {i};" * 1000 for i in range(50)]

    async def fragments() -> AsyncIterator[str]:
        for piece in pieces:
            yield piece
            await asyncio.sleep(0)

    async def main() -> None:
        async with serve(echo, HOST, 0, max_size=8 * MiB) as server:
            uri = f"ws://{HOST}:{port_of(server)}"
            async with connect(uri, max_size=8 * MiB, proxy=None) as ws:
                await ws.send(big)
                assert await ws.recv() == big
                # Sent as 50 frames, received by the server as one message, echoed whole.
                await ws.send(fragments())
                assert await ws.recv() == "".join(pieces)
                pong = await ws.ping(b"are you there")
                latency = await asyncio.wait_for(pong, 10)
                assert 0 <= latency < 10

    run(main())


def test_close_codes_and_reasons(run: Run) -> None:
    async def handler(ws: ServerConnection) -> None:
        name = await ws.recv(decode=True)
        if name == "crash":
            raise RuntimeError("the handler failed")  # websockets answers 1011
        await ws.close(4001, f"goodbye {name}")

    async def main() -> None:
        async with serve(handler, HOST, 0) as server:
            uri = f"ws://{HOST}:{port_of(server)}"
            async with connect(uri, proxy=None) as ws:
                await ws.send("alice")
                with pytest.raises(ConnectionClosedError) as closed:
                    await ws.recv()
                assert closed.value.rcvd is not None
                assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "goodbye alice")
            async with connect(uri, proxy=None) as ws:
                await ws.send("crash")
                with pytest.raises(ConnectionClosedError) as closed:
                    await ws.recv()
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == 1011
            async with connect(uri, proxy=None) as ws:
                await ws.close(1000, "client done")
                with pytest.raises(ConnectionClosedOK):
                    await ws.recv()

    run(main())


def test_broadcast_to_20_clients(run: Run) -> None:
    clients, per_client = 20, 10

    async def main() -> None:
        connected: set[ServerConnection] = set()
        all_in = asyncio.Event()

        async def chat(ws: ServerConnection) -> None:
            connected.add(ws)
            if len(connected) == clients:
                all_in.set()
            try:
                async for message in ws:
                    broadcast(connected, message, raise_exceptions=True)
            finally:
                connected.discard(ws)

        async def member(uri: str, me: int) -> list[str]:
            async with connect(uri, proxy=None) as ws:
                await asyncio.wait_for(all_in.wait(), 10)
                for n in range(per_client):
                    await ws.send(f"{me}:{n}")
                heard = [str(await ws.recv()) for _ in range(clients * per_client)]
            return heard

        async with serve(chat, HOST, 0) as server:
            uri = f"ws://{HOST}:{port_of(server)}"
            heard = await asyncio.gather(*(member(uri, me) for me in range(clients)))
        everything = sorted(f"{c}:{n}" for c in range(clients) for n in range(per_client))
        for messages in heard:
            assert sorted(messages) == everything
            for c in range(clients):  # each sender's messages arrive in the order sent
                assert [m for m in messages if m.startswith(f"{c}:")] == [
                    f"{c}:{n}" for n in range(per_client)
                ]

    run(main())


def test_wss_with_a_test_ca(run: Run) -> None:
    material = tls_material()
    messages = mixed_messages(200, seed=3)

    async def main() -> None:
        async with serve(echo, HOST, 0, ssl=material.server_context()) as server:
            uri = f"wss://{HOST}:{port_of(server)}"
            async with connect(uri, ssl=material.client_context(), proxy=None) as ws:
                ssl_object = ws.transport.get_extra_info("ssl_object")
                assert isinstance(ssl_object, ssl.SSLObject)
                assert ssl_object.version() in ("TLSv1.2", "TLSv1.3")
                assert await echo_all(ws, messages) == messages
            untrusting = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            with pytest.raises(ssl.SSLCertVerificationError):
                async with connect(uri, ssl=untrusting, proxy=None):
                    pass

    run(main())


def test_unix_socket(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "ws.sock"
    messages = mixed_messages(200, seed=4)

    async def main() -> None:
        async with (
            unix_serve(echo, str(path)),
            unix_connect(str(path), uri="ws://localhost/") as ws,
        ):
            assert await echo_all(ws, messages) == messages

    run(main())
