"""The web rows' servers: uvicorn (httptools) with an ASGI hello app, aiohttp's hello handler.

Each is run the way its documentation tells an application to run it, on the
loop under test: uvicorn is handed the loop's factory (``Config(loop=...)``,
what ``uvicorn --loop module:factory`` does) and makes and runs the loop
itself; aiohttp's ``AppRunner`` and ``SockSite`` start on the loop that
``slipstream.bench.child`` runs.  Both answer ``GET /`` with a 13-byte
``Hello, World!`` and a Content-Length, keep-alive, no access log: the rows
compare what each loop costs a real framework per request, and the framework's
own work is the same on every loop.

uvicorn and aiohttp are imported only here, and only in the child that runs
them: the bench itself does not need them (their rows are error cells saying
so when they are not installed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .servers import announce, die_on_loop_error, listening_socket

HELLO = b"Hello, World!"
BACKLOG = 1024

# ASGI's three arguments, typed as loosely as the specification words them.
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

HELLO_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(HELLO))],
}
HELLO_BODY = {"type": "http.response.body", "body": HELLO}


class AsgiHello:
    """A minimal ASGI application: ``Hello, World!`` for every request.

    It also speaks the lifespan protocol, only to tell the parent that the
    server is ready once uvicorn has started it (uvicorn runs the lifespan
    start-up, then serves the sockets it was given).
    """

    def __init__(self, port: int) -> None:
        self.port = port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # The response in two events, head then body, as frameworks send it.
            await send(HELLO_START)
            await send(HELLO_BODY)
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                    announce(f"ready {self.port}")
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return


LoopFactory = Callable[[], asyncio.AbstractEventLoop]
# The factory of the loop under test, for uvicorn_loop(): set by run_uvicorn.
_loop_under_test: list[LoopFactory] = []


def uvicorn_loop() -> asyncio.AbstractEventLoop:
    """A loop of the kind under test, for uvicorn's ``loop="module:attribute"`` option."""
    loop = _loop_under_test[0]()
    loop.set_exception_handler(die_on_loop_error)
    return loop


def run_uvicorn(factory: LoopFactory) -> None:
    """Serve the ASGI hello with uvicorn and httptools on loops from ``factory``, until SIGTERM.

    uvicorn takes the factory as an import string (its typed API, and what
    ``uvicorn --loop module:attribute`` does), so it is reached through
    :func:`uvicorn_loop`.  uvicorn shuts down gracefully on SIGTERM, then
    re-raises it: the process ends by that signal, which the bench's
    ``Server.stop`` expects.
    """
    import uvicorn

    _loop_under_test[:] = [factory]
    sock = listening_socket(BACKLOG)
    config = uvicorn.Config(
        AsgiHello(sock.getsockname()[1]),
        loop=f"{__name__}:{uvicorn_loop.__name__}",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        backlog=BACKLOG,
    )
    uvicorn.Server(config).run(sockets=[sock])


async def serve_aiohttp() -> None:
    """Serve aiohttp's hello handler on the running loop until the process is terminated."""
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.Response(body=HELLO, content_type="text/plain")

    logging.getLogger("aiohttp").setLevel(logging.WARNING)
    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = listening_socket(BACKLOG)
    port = sock.getsockname()[1]  # before the site starts: rloop takes the socket's fd over
    await web.SockSite(runner, sock, backlog=BACKLOG).start()
    announce(f"ready {port}")
    await asyncio.Event().wait()  # serve until terminated
