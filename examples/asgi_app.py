"""The smallest ASGI application, for the server commands in the README.

    uvicorn examples.asgi_app:app --loop slipstream:new_event_loop
    gunicorn -k slipstream.servers.gunicorn.SlipstreamWorker --workers 2 examples.asgi_app:app
    python -m slipstream.servers.hypercorn examples.asgi_app:app

(from the repository's root; each serves http://127.0.0.1:8000/). Every request is
answered with JSON naming the event loop that ran the handler and the process it ran in,
so `curl http://127.0.0.1:8000/` shows whether the server runs on slipstream.
"""

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return  # no lifespan events to handle: the server carries on without them
    loop = type(asyncio.get_running_loop())
    answer = {"path": scope["path"], "loop": f"{loop.__module__}.{loop.__qualname__}",
              "pid": os.getpid()}
    body = json.dumps(answer).encode() + b"\n"
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
