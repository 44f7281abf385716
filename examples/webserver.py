"""A web server: an aiohttp application behind `web.AppRunner`, stopped cleanly by a signal.

    python examples/webserver.py [--port 8080]      # then open http://127.0.0.1:8080/

It serves `/` (a greeting), `/hello/{name}` (JSON) and `/loop` (the class of the event
loop answering, so `python -m slipstream examples/webserver.py` shows slipstream's),
prints each request, and on SIGINT (Ctrl+C) or SIGTERM stops accepting, lets requests in
flight finish, and prints how many it answered.

Needs aiohttp (`pip install aiohttp`).
"""

import argparse
import asyncio
import signal

from aiohttp import web
from aiohttp.typedefs import Handler

REQUESTS = web.AppKey("requests", list[str])  # the paths answered, in order


async def greeting(request: web.Request) -> web.Response:
    return web.Response(text="Hello from an asyncio web server.\n")


async def hello(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    return web.json_response({"greeting": f"Hello, {name}!"})


async def loop_class(request: web.Request) -> web.Response:
    loop = type(asyncio.get_running_loop())
    return web.json_response({"loop": f"{loop.__module__}.{loop.__qualname__}"})


@web.middleware
async def log_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    request.app[REQUESTS].append(request.path)
    print(f"{request.method} {request.path}: {response.status}", flush=True)
    return response


def make_app() -> web.Application:
    app = web.Application(middlewares=[log_requests])
    app[REQUESTS] = []
    app.router.add_get("/", greeting)
    app.router.add_get("/hello/{name}", hello)
    app.router.add_get("/loop", loop_class)
    return app


async def main(port: int) -> None:
    app = make_app()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    host, bound_port = runner.addresses[0][:2]
    print(f"serving on http://{host}:{bound_port}/ (Ctrl+C to stop)", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()

    print("stopping: requests in flight finish first", flush=True)
    await runner.cleanup()
    print(f"answered {len(app[REQUESTS])} requests", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    asyncio.run(main(parser.parse_args().port))
