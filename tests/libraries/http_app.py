"""An aiohttp.web application for the HTTP client tests (aiohttp's and httpx's); no tests here.

The handlers record what they saw in a :class:`ServerState` (peers, requests
in flight, websocket messages), so that a test can check the server's side of
a conversation as well as the client's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

HOST = "127.0.0.1"
CHUNK = 64 * 1024
BIG = 5 * 1024 * 1024


@dataclass
class ServerState:
    """What the handlers saw, for the tests to check."""

    payload: bytes
    payload_file: Path
    peers: list[tuple[str, int]] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    websocket_messages: int = 0
    stream_gate: asyncio.Event = field(default_factory=asyncio.Event)
    client_gone: asyncio.Event = field(default_factory=asyncio.Event)


STATE = web.AppKey("state", ServerState)


def _state(request: web.Request) -> ServerState:
    return request.app[STATE]


async def get_json(request: web.Request) -> web.Response:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    _state(request).peers.append(tuple(peer[:2]) if peer else ("?", 0))
    return web.json_response({"query": dict(request.query), "scheme": request.scheme})


async def post_json(request: web.Request) -> web.Response:
    body = await request.json()
    return web.json_response(
        {"sum": sum(body["numbers"]), "reversed": body["words"][::-1], "echo": body}
    )


async def upload(request: web.Request) -> web.Response:
    """Hash the body as it arrives, never holding all of it."""
    digest, size = hashlib.sha256(), 0
    async for chunk in request.content.iter_chunked(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return web.json_response(
        {
            "size": size,
            "sha256": digest.hexdigest(),
            "chunked": request.headers.get("Transfer-Encoding") == "chunked",
        }
    )


async def download_file(request: web.Request) -> web.FileResponse:
    return web.FileResponse(_state(request).payload_file)


async def download_bytes(request: web.Request) -> web.Response:
    return web.Response(body=_state(request).payload, content_type="application/octet-stream")


async def stream(request: web.Request) -> web.StreamResponse:
    """Half the lines, then wait until the client has read one: proof that nothing is buffered."""
    lines = int(request.query["lines"])
    response = web.StreamResponse()
    response.content_type = "text/plain"
    await response.prepare(request)
    for i in range(lines):
        if i == lines // 2:
            await asyncio.wait_for(_state(request).stream_gate.wait(), 10)
        await response.write(f"line {i} {'x' * (i % 50)}\n".encode())
    await response.write_eof()
    return response


async def websocket_echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        _state(request).websocket_messages += 1
        if message.type == aiohttp.WSMsgType.TEXT:
            await ws.send_str(message.data)
        elif message.type == aiohttp.WSMsgType.BINARY:
            await ws.send_bytes(message.data)
    return ws


async def slow(request: web.Request) -> web.Response:
    """A short wait, counting how many requests are in the handler at once."""
    state = _state(request)
    state.in_flight += 1
    state.most_in_flight = max(state.most_in_flight, state.in_flight)
    peer = request.transport.get_extra_info("peername") if request.transport else None
    state.peers.append(tuple(peer[:2]) if peer else ("?", 0))
    try:
        await asyncio.sleep(0.005)
    finally:
        state.in_flight -= 1
    return web.json_response({"i": int(request.query["i"]) * 2})


async def hang(request: web.Request) -> web.Response:
    """Answer only once the client has gone away (or after five seconds)."""
    for _ in range(500):
        if request.transport is None or request.transport.is_closing():
            _state(request).client_gone.set()
            break
        await asyncio.sleep(0.01)
    return web.Response(text="too late")


def make_app(state: ServerState) -> web.Application:
    app = web.Application(client_max_size=2 * BIG)
    app[STATE] = state
    app.router.add_get("/json", get_json)
    app.router.add_post("/json", post_json)
    app.router.add_post("/upload", upload)
    app.router.add_get("/file", download_file)
    app.router.add_get("/bytes", download_bytes)
    app.router.add_get("/stream", stream)
    app.router.add_get("/ws", websocket_echo)
    app.router.add_get("/slow", slow)
    app.router.add_get("/hang", hang)
    return app


@contextlib.asynccontextmanager
async def serve(
    state: ServerState, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[str]:
    """Run the application on a free port; yields its base URL."""
    runner = web.AppRunner(make_app(state))
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"{'https' if ssl_context else 'http'}://{HOST}:{port}"
    finally:
        await runner.cleanup()


def new_state(directory: Path) -> ServerState:
    """A fresh server state with a 5 MiB payload, in memory and in a file under ``directory``."""
    payload = random.Random(1234).randbytes(BIG)
    path = directory / "payload.bin"
    path.write_bytes(payload)
    return ServerState(payload=payload, payload_file=path)


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    """``data`` in pieces of ``size``, as an upload body; yields to the loop now and then."""
    for start in range(0, len(data), size):
        yield data[start : start + size]
        if start % (16 * size) == 0:
            await asyncio.sleep(0)
