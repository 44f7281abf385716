"""aiohttp's server and client on one loop: the loop is under test from both ends at once.

Every test starts an ``aiohttp.web`` application on 127.0.0.1 and talks to it
with an ``aiohttp.ClientSession`` on the same loop, and checks the data that
arrives, not merely that nothing raised.  Between them the tests drive
keep-alive connection reuse, flow control in both directions (5 MiB bodies
pause and resume reading through aiohttp's stream readers), ``loop.sendfile``
(``web.FileResponse``), chunked uploads, a response streamed while the client
reads it, a websocket with 1,000 messages in flight, a connection-limited
client, and all of it over TLS with a CA made at test time.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import random
import ssl
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.libraries.http_app import BIG, CHUNK, ServerState, chunks_of, new_state, serve
from tests.test_tls_certs import tls_material

Run = Callable[[Coroutine[Any, Any, Any]], Any]


@pytest.fixture
def state(tmp_path: Path) -> ServerState:
    """A fresh server state with a 5 MiB payload (in memory and in a file)."""
    return new_state(tmp_path)


async def read_hashed(response: aiohttp.ClientResponse) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    async for chunk in response.content.iter_chunked(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


# -- tests ------------------------------------------------------------------------------------


def test_json_round_trips_reuse_one_connection(run: Run, state: ServerState) -> None:
    async def main() -> None:
        async with serve(state) as url, aiohttp.ClientSession() as session:
            for i in range(50):
                async with session.get(f"{url}/json", params={"i": str(i)}) as response:
                    assert response.status == 200
                    assert await response.json() == {"query": {"i": str(i)}, "scheme": "http"}
                body = {"numbers": list(range(i)), "words": ["a", "b", str(i)], "n": None}
                async with session.post(f"{url}/json", json=body) as response:
                    assert await response.json() == {
                        "sum": sum(range(i)), "reversed": [str(i), "b", "a"], "echo": body
                    }
        # Keep-alive: fifty sequential requests travelled over one connection.
        assert len(state.peers) == 50
        assert len(set(state.peers)) == 1

    run(main())


def test_upload_and_download_5_mib(run: Run, state: ServerState) -> None:
    async def main() -> None:
        expected = hashlib.sha256(state.payload).hexdigest()
        async with serve(state) as url, aiohttp.ClientSession() as session:
            async with session.post(f"{url}/upload", data=io.BytesIO(state.payload)) as response:
                assert await response.json() == {
                    "size": BIG, "sha256": expected, "chunked": False
                }
            generator = chunks_of(state.payload, 100_000)
            async with session.post(f"{url}/upload", data=generator) as response:
                assert await response.json() == {"size": BIG, "sha256": expected, "chunked": True}
            for path in ("/file", "/bytes"):  # loop.sendfile, then plain writes
                async with session.get(url + path) as response:
                    assert response.content_length == BIG
                    assert await read_hashed(response) == (BIG, expected)
            async with session.get(f"{url}/bytes") as response:
                assert await response.read() == state.payload

    run(main())


def test_streaming_response(run: Run, state: ServerState) -> None:
    async def main() -> None:
        lines = 2000
        query = {"lines": str(lines)}
        async with (
            serve(state) as url,
            aiohttp.ClientSession() as session,
            session.get(f"{url}/stream", params=query) as response,
        ):
            assert response.headers.get("Transfer-Encoding") == "chunked"
            received = []
            async for line in response.content:
                received.append(line.decode())
                # The server holds back the second half until the first line is read.
                state.stream_gate.set()
        assert received == [f"line {i} {'x' * (i % 50)}\n" for i in range(lines)]

    run(main())


def test_websocket_echo_1000_messages(run: Run, state: ServerState) -> None:
    async def main() -> None:
        rng = random.Random(7)
        messages: list[str | bytes] = []
        for i in range(1000):
            size = rng.choice((1, 100, 4000, 70_000))
            messages.append(f"{i}:" + "t" * size if i % 2 else rng.randbytes(size))
        async with serve(state) as url, aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{url}/ws") as ws:

                async def send_all() -> None:
                    for message in messages:
                        if isinstance(message, str):
                            await ws.send_str(message)
                        else:
                            await ws.send_bytes(message)

                sender = asyncio.create_task(send_all())
                received: list[str | bytes] = []
                for _ in messages:
                    reply = await ws.receive(timeout=10)
                    assert reply.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY)
                    received.append(reply.data)
                await sender
                await ws.close()
            assert ws.close_code == 1000
        assert received == messages
        assert state.websocket_messages == 1000

    run(main())


def test_200_concurrent_requests_through_10_connections(run: Run, state: ServerState) -> None:
    async def main() -> None:
        connector = aiohttp.TCPConnector(limit=10)
        async with serve(state) as url, aiohttp.ClientSession(connector=connector) as session:

            async def one(i: int) -> int:
                async with session.get(f"{url}/slow", params={"i": str(i)}) as response:
                    value = (await response.json())["i"]
                    assert isinstance(value, int)
                    return value

            results = await asyncio.gather(*(one(i) for i in range(200)))
        assert results == [2 * i for i in range(200)]
        # Requests overlapped, never more than the limit, over connections kept alive.
        assert 2 <= state.most_in_flight <= 10
        assert len(state.peers) == 200
        assert len(set(state.peers)) <= 10

    run(main())


def test_client_timeout_then_the_session_carries_on(run: Run, state: ServerState) -> None:
    async def main() -> None:
        async with serve(state) as url, aiohttp.ClientSession() as session:
            with pytest.raises(TimeoutError):
                await session.get(f"{url}/hang", timeout=aiohttp.ClientTimeout(total=0.2))
            # The client closed the connection; the server's transport saw it go.
            await asyncio.wait_for(state.client_gone.wait(), 5)
            async with session.get(f"{url}/json") as response:
                assert await response.json() == {"query": {}, "scheme": "http"}

    run(main())


def test_https_with_a_test_ca(run: Run, state: ServerState) -> None:
    material = tls_material()

    async def main() -> None:
        expected = hashlib.sha256(state.payload).hexdigest()
        connector = aiohttp.TCPConnector(ssl=material.client_context())
        async with (
            serve(state, material.server_context()) as url,
            aiohttp.ClientSession(connector=connector) as session,
        ):
            # request.scheme: the server's transport reports its sslcontext.
            async with session.get(f"{url}/json", params={"tls": "yes"}) as response:
                assert await response.json() == {"query": {"tls": "yes"}, "scheme": "https"}
            async with session.post(f"{url}/upload", data=io.BytesIO(state.payload)) as response:
                assert (await response.json())["sha256"] == expected
            async with session.get(f"{url}/file") as response:  # no sendfile under TLS
                # Until the body is read, the response holds its connection and transport.
                assert response.connection is not None
                transport = response.connection.transport
                assert transport is not None
                ssl_object = transport.get_extra_info("ssl_object")
                assert isinstance(ssl_object, ssl.SSLObject)
                peer_certificate = ssl_object.getpeercert()
                assert peer_certificate is not None
                assert peer_certificate["subject"] == ((("commonName", "localhost"),),)
                assert await read_hashed(response) == (BIG, expected)
            async with session.ws_connect(f"{url}/ws") as ws:
                for i in range(100):
                    await ws.send_str(f"secure {i}")
                    assert await ws.receive_str(timeout=10) == f"secure {i}"

            # A client that does not trust the test CA must refuse the server.
            untrusting = aiohttp.TCPConnector(ssl=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
            async with aiohttp.ClientSession(connector=untrusting) as stranger:
                with pytest.raises(aiohttp.ClientConnectorCertificateError):
                    await stranger.get(f"{url}/json")

    run(main())
