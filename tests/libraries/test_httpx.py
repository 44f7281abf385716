"""httpx's AsyncClient against the aiohttp server, on one loop.

httpx reaches the loop through anyio (``loop.create_connection`` and
``asyncio`` streams-style protocols) and does TLS itself over memory BIOs, so
it drives the loop differently from aiohttp's own client: the same server
answers both, and the tests check the same data.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.libraries.http_app import BIG, ServerState, chunks_of, new_state, serve
from tests.test_tls_certs import tls_material

Run = Callable[[Coroutine[Any, Any, Any]], Any]


@pytest.fixture
def state(tmp_path: Path) -> ServerState:
    """A fresh server state with a 5 MiB payload (in memory and in a file)."""
    return new_state(tmp_path)


def client(url: str, **kwargs: Any) -> httpx.AsyncClient:
    # trust_env=False: a proxy set in the environment must not come between us and loopback.
    return httpx.AsyncClient(base_url=url, trust_env=False, timeout=30, **kwargs)


async def read_hashed(response: httpx.Response) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    async for chunk in response.aiter_bytes():
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def test_json_round_trips_reuse_one_connection(run: Run, state: ServerState) -> None:
    async def main() -> None:
        async with serve(state) as url, client(url) as http:
            for i in range(50):
                response = await http.get("/json", params={"i": i})
                assert response.status_code == 200
                assert response.json() == {"query": {"i": str(i)}, "scheme": "http"}
                body = {"numbers": list(range(i)), "words": ["x", str(i)]}
                response = await http.post("/json", json=body)
                assert response.json() == {
                    "sum": sum(range(i)), "reversed": [str(i), "x"], "echo": body
                }
        assert len(state.peers) == 50
        assert len(set(state.peers)) == 1

    run(main())


def test_upload_and_download_5_mib(run: Run, state: ServerState) -> None:
    async def main() -> None:
        expected = hashlib.sha256(state.payload).hexdigest()
        async with serve(state) as url, client(url) as http:
            response = await http.post("/upload", content=state.payload)
            assert response.json() == {"size": BIG, "sha256": expected, "chunked": False}
            response = await http.post("/upload", content=chunks_of(state.payload, 100_000))
            assert response.json() == {"size": BIG, "sha256": expected, "chunked": True}
            for path in ("/file", "/bytes"):
                async with http.stream("GET", path) as streamed:
                    assert streamed.headers["Content-Length"] == str(BIG)
                    assert await read_hashed(streamed) == (BIG, expected)

    run(main())


def test_streaming_response(run: Run, state: ServerState) -> None:
    async def main() -> None:
        lines = 1000
        async with serve(state) as url, client(url) as http:
            received = []
            async with http.stream("GET", "/stream", params={"lines": lines}) as response:
                async for line in response.aiter_lines():
                    received.append(line)
                    state.stream_gate.set()
        assert received == [f"line {i} {'x' * (i % 50)}" for i in range(lines)]

    run(main())


def test_100_concurrent_requests_through_10_connections(run: Run, state: ServerState) -> None:
    async def main() -> None:
        limits = httpx.Limits(max_connections=10, max_keepalive_connections=10)
        async with serve(state) as url, client(url, limits=limits) as http:

            async def one(i: int) -> int:
                value = (await http.get("/slow", params={"i": i})).json()["i"]
                assert isinstance(value, int)
                return value

            results = await asyncio.gather(*(one(i) for i in range(100)))
        assert results == [2 * i for i in range(100)]
        # Requests overlapped, never more than the limit, over connections kept alive.
        assert 2 <= state.most_in_flight <= 10
        assert len(state.peers) == 100
        assert len(set(state.peers)) <= 10

    run(main())


def test_https_with_a_test_ca(run: Run, state: ServerState) -> None:
    material = tls_material()

    async def main() -> None:
        expected = hashlib.sha256(state.payload).hexdigest()
        async with (
            serve(state, material.server_context()) as url,
            client(url, verify=material.client_context()) as http,
        ):
            response = await http.get("/json", params={"tls": "yes"})
            assert response.json() == {"query": {"tls": "yes"}, "scheme": "https"}
            response = await http.post("/upload", content=state.payload)
            assert response.json()["sha256"] == expected
            async with http.stream("GET", "/file") as streamed:
                assert await read_hashed(streamed) == (BIG, expected)

            untrusting = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            async with client(url, verify=untrusting) as stranger:
                with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    await stranger.get("/json")

    run(main())
