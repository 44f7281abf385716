"""``python -m slipstream.bench.loadgen SPEC``: the echo load generator, a separate process.

It keeps ``connections`` sockets busy with one message of ``size`` bytes in
flight on each: a message is sent, the whole echo is read back, and the next one
goes out.  It is a single ``select.epoll`` loop over non-blocking sockets with
one preallocated receive buffer — no event loop, no allocation per message — so
it stays cheaper than any server it drives; it reports its own CPU use so the
parent can show that it was not the bottleneck.

With ``"mode": "http"`` each connection is an HTTP/1.1 keep-alive client
instead (the web rows): the message is a GET request and a round trip ends
when the whole response, head and Content-Length body, has arrived.

After ``warmup`` seconds it samples its request count, its own CPU time and
the server's CPU time (from ``/proc/PID``), runs ``duration`` seconds more and
samples again; it prints the differences as one JSON line.
"""

from __future__ import annotations

import json
import os
import resource
import select
import socket
import sys
import time
from typing import Any

STALL_SECONDS = 5.0


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) that process ``pid`` has used.

    Summed from each thread's ``schedstat`` (nanoseconds) when the kernel
    provides it — ``/proc/PID/stat`` counts in 10 ms ticks, too coarse for a
    two-second window — and from ``stat`` otherwise.
    """
    try:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as schedstat:
                total += int(schedstat.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/stat") as stat:
            # The command name may contain spaces: fields are counted after its ')'.
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def http_request(port: int) -> bytes:
    """The request of the HTTP mode: what wrk sends, a GET with only the Host header."""
    return f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


def complete_response(inbox: bytes | bytearray) -> int:
    """The size of the complete HTTP response at the start of ``inbox``; 0 while incomplete.

    Raises RuntimeError for what the web rows never expect: another status
    than 200, or a body without Content-Length (chunked, or until close).
    """
    end = inbox.find(b"\r\n\r\n")
    if end < 0:
        return 0
    if not inbox.startswith(b"HTTP/1.1 200"):
        raise RuntimeError("not an HTTP/1.1 200 response")
    for line in bytes(inbox[:end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            size = end + 4 + int(value)
            return size if len(inbox) >= size else 0
    raise RuntimeError("response without Content-Length")


def run(spec: dict[str, Any]) -> dict[str, float]:
    """Drive the echo (or HTTP) server described by ``spec``; the measured window's totals."""
    http = spec.get("mode", "echo") == "http"
    count = int(spec["connections"])
    server_pid = int(spec["server_pid"])
    payload = http_request(int(spec["port"])) if http else b"x" * int(spec["size"])
    size = len(payload)
    inboxes: dict[int, bytearray] = {}
    buffer = bytearray(65536)
    view = memoryview(buffer)
    sockets = [socket.create_connection((spec["host"], spec["port"])) for _ in range(count)]
    poller = select.epoll()
    by_fd: dict[int, socket.socket] = {}
    expected: dict[int, int] = {}
    unsent: dict[int, memoryview] = {}
    for sock in sockets:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        by_fd[sock.fileno()] = sock
        expected[sock.fileno()] = size
        poller.register(sock.fileno(), select.EPOLLIN)

    def send_message(fd: int, sock: socket.socket, data: memoryview | bytes) -> None:
        # Try the send first; only a message the socket buffer cannot take whole
        # waits for EPOLLOUT (100 KiB messages, mostly).
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            unsent[fd] = memoryview(data)[sent:]
            poller.modify(fd, select.EPOLLIN | select.EPOLLOUT)
        elif fd in unsent:
            del unsent[fd]
            poller.modify(fd, select.EPOLLIN)

    for fd, sock in by_fd.items():
        send_message(fd, sock, payload)

    warmup, duration = float(spec["warmup"]), float(spec["duration"])
    started = time.perf_counter()
    window_start = started + warmup
    window_end = window_start + duration
    measuring = False
    requests = 0
    last_progress = started
    first: tuple[int, float, float, float] = (0, 0.0, 0.0, 0.0)
    epollin, epollout = select.EPOLLIN, select.EPOLLOUT
    while True:
        now = time.perf_counter()
        if not measuring and now >= window_start:
            first = (requests, now, process_cpu_seconds(server_pid), own_cpu_seconds())
            measuring = True
        elif now >= window_end:
            break
        events = poller.poll(0.5)
        if not events:
            if time.perf_counter() - last_progress > STALL_SECONDS:
                raise RuntimeError(f"no reply from the server for {STALL_SECONDS:.0f} s")
            continue
        last_progress = now
        for fd, mask in events:
            sock = by_fd[fd]
            if mask & epollin:
                received = sock.recv_into(view)
                if not received:
                    raise RuntimeError("the server closed a connection")
                if http:
                    inbox = inboxes.setdefault(fd, bytearray())
                    inbox += view[:received]
                    done = complete_response(inbox)
                    if not done:
                        continue
                    if done != len(inbox):  # one request in flight: nothing may follow
                        raise RuntimeError("bytes after a complete response")
                    inbox.clear()
                else:
                    left = expected[fd] - received
                    if left > 0:
                        expected[fd] = left
                        continue
                    expected[fd] = size
                requests += 1
                send_message(fd, sock, payload)
            elif mask & epollout:
                send_message(fd, sock, unsent[fd])
            else:
                raise RuntimeError(f"connection error (epoll mask {mask:#x})")
    end = (requests, time.perf_counter(), process_cpu_seconds(server_pid), own_cpu_seconds())
    for sock in sockets:
        sock.close()
    return {
        "requests": end[0] - first[0],
        "elapsed": end[1] - first[1],
        "server_cpu": end[2] - first[2],
        "client_cpu": end[3] - first[3],
    }


def main(argv: list[str]) -> int:
    try:
        result: dict[str, Any] = run(json.loads(argv[0]))
    except (OSError, RuntimeError) as exc:
        result = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
