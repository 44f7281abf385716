"""``python -m tests.servers.aiohttp_server PORT asyncio|slipstream``: aiohttp's ``web.run_app``.

The routes are those of ``asgi_app`` (``/loop``, ``/slow``, ``/hold``), with the
same bodies.  On slipstream the loop is passed as ``run_app(..., loop=...)``, as
the README says; on asyncio ``run_app`` makes its own.
"""

from __future__ import annotations

import asyncio
import sys
import time

from aiohttp import web

import slipstream
from tests.servers.asgi_app import (
    BODY_LENGTH,
    HOLD_SECONDS,
    LAST_LINE,
    SLOW_SECONDS,
    first_line,
    loop_description,
)


async def loop_handler(request: web.Request) -> web.Response:
    return web.json_response(loop_description())


async def slow_handler(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    response.content_length = BODY_LENGTH
    await response.prepare(request)
    await response.write(first_line())
    if request.path == "/slow":
        await asyncio.sleep(SLOW_SECONDS)
    else:
        time.sleep(HOLD_SECONDS)  # blocks the loop on purpose, as asgi_app's /hold does
    await response.write(LAST_LINE)
    await response.write_eof()
    return response


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/loop", loop_handler)
    app.router.add_get("/slow", slow_handler)
    app.router.add_get("/hold", slow_handler)
    return app


def main(port: int, loop_name: str) -> None:
    loop = slipstream.new_event_loop() if loop_name == "slipstream" else None
    web.run_app(make_app(), host="127.0.0.1", port=port, loop=loop)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
