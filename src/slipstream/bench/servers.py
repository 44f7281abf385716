"""The servers that run on the loop under test, inside a child interpreter.

Each server binds 127.0.0.1 on a free port, prints ``ready PORT`` on stdout and
serves until the parent terminates the process.  They are written the way an
application would write them with each API — nothing loop-specific — so a row
compares loops, not servers.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from typing import Any, cast

READ_SIZE = 65536
HTTP_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!"
)


def announce(line: str) -> None:
    """Tell the parent something (it reads the child's stdout line by line)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def die_on_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Exception handler: any error the loop reports ends the server at once.

    A server that logged an error and kept running would leave the load
    generator waiting for a reply that never comes; exiting turns a broken loop
    into a prompt, explained error cell instead of a timeout.
    """
    exception = context.get("exception")
    if isinstance(exception, ConnectionError):
        return  # a client went away mid-message: normal for a server, not a loop failure
    detail = f"{type(exception).__name__}: {exception}" if exception else ""
    sys.stderr.write(f"server error: {context.get('message', '')} {detail}\n")
    sys.stderr.flush()
    os._exit(3)


class EchoProtocol(asyncio.Protocol):
    """Echo with the Protocol API: every chunk received is written straight back."""

    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not asserted with isinstance: uvloop's and rloop's transports do not
        # inherit from asyncio.Transport, though they implement it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def echo_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo with the streams API (``asyncio.start_server``)."""
    try:
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass  # the load generator closes its connections with messages in flight
    writer.close()


async def echo_socket(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
    """Echo with the loop's socket operations (``sock_recv`` / ``sock_sendall``)."""
    with conn:
        try:
            while True:
                data = await loop.sock_recv(conn, READ_SIZE)
                if not data:
                    break
                await loop.sock_sendall(conn, data)
        except ConnectionError:
            pass  # the load generator closes its connections with messages in flight


class HttpHelloProtocol(asyncio.Protocol):
    """A keep-alive HTTP/1.1 hello world: one fixed response per request head.

    It parses no more than it must (the end of each request head); wrk sends
    GET requests without bodies, one at a time per connection.
    """

    transport: asyncio.Transport

    def __init__(self) -> None:
        self.pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not asserted with isinstance: uvloop's and rloop's transports do not
        # inherit from asyncio.Transport, though they implement it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self.pending + data if self.pending else data
        requests = buffer.count(b"\r\n\r\n")
        if requests:
            self.transport.write(HTTP_RESPONSE * requests)
            self.pending = buffer[buffer.rfind(b"\r\n\r\n") + 4 :]
        else:
            self.pending = buffer


def resident_bytes() -> int:
    """This process's resident set size, from ``/proc/self/statm``."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


class IdleCounter:
    """Counts accepted idle connections and reports progress to the parent.

    ``accepted N`` every 500 connections lets the client pace itself so the
    kernel's accept queue never overflows (an overflow drops the SYN and the
    client would wait a whole retransmission second, measuring the kernel's
    timer instead of the loop).
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self.first = 0.0
        self.rss_before = resident_bytes()
        self.keep: list[asyncio.BaseTransport] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.count += 1
        self.keep.append(transport)
        if self.count == 1:
            self.first = time.perf_counter()
        if self.count == self.target:
            elapsed = time.perf_counter() - self.first
            announce(f"done {self.count} {elapsed:.6f} {self.rss_before} {resident_bytes()}")
        elif self.count % 500 == 0:
            announce(f"accepted {self.count}")


class IdleProtocol(asyncio.Protocol):
    """A connection that only waits (the scale benchmark's 10,000 idle clients)."""

    def __init__(self, counter: IdleCounter) -> None:
        self.counter = counter

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.counter.connection_made(transport)


async def serve(kind: str, mode: str, target: int) -> None:
    """Run one server until the process is terminated.

    ``kind`` is ``echo`` (with ``mode`` protocol, streams or sock), ``http``,
    ``aiohttp`` (see :mod:`~slipstream.bench.web_servers`) or ``scale``
    (``target`` idle connections).  uvicorn makes its own loop, so it is not
    started here but by :mod:`~slipstream.bench.child`.
    """
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(die_on_loop_error)
    if kind == "echo" and mode == "protocol":
        server = await loop.create_server(EchoProtocol, "127.0.0.1", 0, backlog=128)
    elif kind == "echo" and mode == "streams":
        server = await asyncio.start_server(echo_stream, "127.0.0.1", 0, backlog=128)
    elif kind == "echo" and mode == "sock":
        await serve_with_sock_accept(loop)
        return
    elif kind == "http":
        server = await loop.create_server(HttpHelloProtocol, "127.0.0.1", 0, backlog=1024)
    elif kind == "aiohttp":
        from .web_servers import serve_aiohttp  # aiohttp is imported only where it serves

        await serve_aiohttp()
        return
    elif kind == "scale":
        counter = IdleCounter(target)
        server = await loop.create_server(
            lambda: IdleProtocol(counter), "127.0.0.1", 0, backlog=4096
        )
    else:
        raise ValueError(f"unknown server {kind!r} / {mode!r}")
    port = server.sockets[0].getsockname()[1]
    announce(f"ready {port}")
    await asyncio.Event().wait()  # serve until terminated


def listening_socket(backlog: int) -> socket.socket:
    """A non-blocking TCP socket listening on 127.0.0.1, on a free port.

    Made with ``IPPROTO_TCP`` spelled out, as ``getaddrinfo`` gives it to
    ``create_server(host, port)``: asyncio sets TCP_NODELAY on a connection only
    when its socket says so, and with protocol 0 a response written as head
    then body waits ~40 ms for the client's delayed ACK (Nagle).
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(backlog)
    listener.setblocking(False)
    return listener


async def serve_with_sock_accept(loop: asyncio.AbstractEventLoop) -> None:
    """The sock_* echo server: a ``sock_accept`` loop and one task per connection."""
    listener = listening_socket(128)
    announce(f"ready {listener.getsockname()[1]}")
    tasks: set[asyncio.Task[None]] = set()
    while True:
        conn, _ = await loop.sock_accept(listener)
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = loop.create_task(echo_socket(loop, conn))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
