"""The ASGI application the server tests serve (uvicorn, gunicorn, hypercorn).

* ``GET /loop`` answers with the class of the loop that runs the handler and
  the worker's process id, as JSON.
* ``GET /slow`` sends that JSON as its first line at once and its last line
  after ``SLOW_SECONDS`` of ``asyncio.sleep``: a test that has read the first
  line knows the request is in flight when it signals the server to stop.
* ``GET /hold`` does the same but *blocks* its worker's loop (``time.sleep``)
  between the two lines, so while it is held every new connection goes to
  another worker: that is how a test reaches each worker in turn.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SLOW_SECONDS = 1.0
HOLD_SECONDS = 1.5
FIRST_LINE_LENGTH = 200  # the JSON line, padded with spaces, so the body has a known length
LAST_LINE = b"finished\n"
BODY_LENGTH = FIRST_LINE_LENGTH + len(LAST_LINE)


def loop_description() -> dict[str, Any]:
    """What ``/loop`` reports: the running loop's class and this process's id."""
    loop_class = type(asyncio.get_running_loop())
    return {"loop": f"{loop_class.__module__}.{loop_class.__qualname__}", "pid": os.getpid()}


def first_line() -> bytes:
    """The first line of ``/slow`` and ``/hold``: ``loop_description()`` padded to its length."""
    return json.dumps(loop_description()).encode().ljust(FIRST_LINE_LENGTH - 1) + b"\n"


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI application: ``/loop``, ``/slow``, ``/hold`` and 404 for the rest."""
    if scope["type"] == "lifespan":
        await serve_lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    if scope["path"] == "/loop":
        await respond(send, 200, json.dumps(loop_description()).encode(), b"application/json")
    elif scope["path"] in ("/slow", "/hold"):
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % BODY_LENGTH)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": first_line(), "more_body": True})
        if scope["path"] == "/slow":
            await asyncio.sleep(SLOW_SECONDS)
        else:
            time.sleep(HOLD_SECONDS)  # blocks this worker on purpose (see the docstring)
        await send({"type": "http.response.body", "body": LAST_LINE})
    else:
        await respond(send, 404, b"not found\n", b"text/plain")


async def respond(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def serve_lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
