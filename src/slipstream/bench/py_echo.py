"""The Python floor: the leanest echo server Python can run, beside the C one.

``python -m slipstream.bench.py_echo`` serves the echo benchmark's Protocol
rows the way ``c_echo.c`` does -- one thread, level-triggered ``select.epoll``,
``recv(65536)`` and ``send`` straight back, the rest kept until ``EPOLLOUT`` --
with no event loop around it: no handles, no ready queue, no transports, no
protocol objects, no exception handler.  Whatever an event loop written in
Python costs per round trip, it costs at least this (the C server's kernel
share plus the interpreter's price for an epoll wait, a dict lookup, two
socket method calls and a bytes object).  The benchmark shows it as the
``py-epoll`` column so that a loop's overhead can be read against both
floors: what the kernel needs, and what Python needs on top.

It is a reference, not a server to copy: it trusts its peer, never times
out, and drops a connection at the first error.  Binds 127.0.0.1 on a free
port, prints ``ready PORT`` and serves until killed.
"""

from __future__ import annotations

import select
import socket
import sys

READ_SIZE = 65536


def serve() -> None:  # pragma: no cover - run as a benchmark process
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    listener.setblocking(False)
    poller = select.epoll()
    poller.register(listener.fileno(), select.EPOLLIN)
    connections: dict[int, socket.socket] = {}
    pending: dict[int, bytes] = {}
    print(f"ready {listener.getsockname()[1]}", flush=True)
    listening = listener.fileno()
    while True:
        for fd, mask in poller.poll():
            if fd == listening:
                conn, _ = listener.accept()
                conn.setblocking(False)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                connections[conn.fileno()] = conn
                poller.register(conn.fileno(), select.EPOLLIN)
                continue
            conn = connections[fd]
            try:
                if mask & select.EPOLLOUT:
                    rest = pending.pop(fd)
                    sent = conn.send(rest)
                    if sent < len(rest):
                        pending[fd] = rest[sent:]
                    else:
                        poller.modify(fd, select.EPOLLIN)
                    continue
                data = conn.recv(READ_SIZE)
                if not data:
                    raise ConnectionResetError
                sent = conn.send(data)
                if sent < len(data):
                    pending[fd] = data[sent:]
                    poller.modify(fd, select.EPOLLOUT)
            except BlockingIOError:
                pass
            except OSError:
                poller.unregister(fd)
                del connections[fd]
                pending.pop(fd, None)
                conn.close()


if __name__ == "__main__":  # pragma: no cover
    serve()
    sys.exit(0)
