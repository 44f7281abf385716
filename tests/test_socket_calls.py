"""The I/O path's socket calls keep the socket methods' contract, on either build.

``slipstream.backends.recv`` / ``recv_into`` / ``send`` are what the transports
and ``sock_*`` call: compiled, C functions that make the system call
themselves (backends/syscalls.pxd); interpreted, thin wrappers of the socket
methods.  scripts/test.sh runs this file on both builds, and every test here
compares the call with the socket method it replaces on the same situation:
same result, same exception type and errno.
"""

from __future__ import annotations

import collections
import errno
import functools
import random
import select
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from slipstream import backends
from slipstream.backends import syscalls


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    """What a call gives, comparably: ("ok", value) or ("error", (type, errno))."""
    try:
        return ("ok", call())
    except Exception as exc:  # compared, not swallowed
        return ("error", (type(exc), getattr(exc, "errno", None)))


def receive_all(sock: socket.socket, expected: int) -> int:
    """Read from ``sock`` until ``expected`` bytes have come; how many came."""
    received = 0
    while received < expected:
        select.select([sock], [], [], 5)
        received += len(sock.recv(1 << 20))
    return received


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    client.setblocking(False)
    server.setblocking(False)
    return client, server


def test_the_compiled_calls_are_in_use_when_built() -> None:
    assert backends.recv is not syscalls.recv or not backends.COMPILED


def test_recv_on_an_empty_socket_would_block(pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair
    assert outcome(lambda: backends.recv(a, 100)) == outcome(lambda: a.recv(100))
    assert outcome(lambda: backends.recv(a, 100))[1][0] is BlockingIOError


@pytest.mark.parametrize("size", [1, 5, 1024, 256 * 1024, 256 * 1024 + 1, 1 << 20])
def test_recv_returns_what_came_up_to_size(
    pair: tuple[socket.socket, socket.socket], size: int
) -> None:
    a, b = pair
    payload = bytes(range(256)) * 40  # 10,240 bytes
    b.sendall(payload)
    got = backends.recv(a, size)
    assert got == payload[:size]
    assert type(got) is bytes
    rest = payload[len(got):]
    if rest:
        assert a.recv(len(rest)) == rest


@pytest.mark.parametrize("size", [0, -1, 2.5, "10", None, 1 << 70])
def test_recv_with_a_bad_size_fails_as_the_method_does(
    pair: tuple[socket.socket, socket.socket], size: Any
) -> None:
    a, b = pair
    b.send(b"x")
    assert outcome(lambda: backends.recv(a, size)) == outcome(lambda: a.recv(size))


def test_recv_at_end_of_stream_is_empty(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    b.shutdown(socket.SHUT_WR)
    assert backends.recv(a, 100) == b""


def test_calls_on_a_closed_socket_fail_with_ebadf() -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    a.close()
    b.close()
    expected = ("error", (OSError, errno.EBADF))
    assert outcome(lambda: backends.recv(a, 10)) == expected == outcome(lambda: a.recv(10))
    assert outcome(lambda: backends.recv_or_none(a, 10)) == expected
    assert outcome(lambda: backends.send(a, b"x")) == outcome(lambda: a.send(b"x"))
    assert outcome(lambda: backends.recv_into(a, bytearray(4))) == outcome(
        lambda: a.recv_into(bytearray(4))
    )


@pytest.mark.parametrize(
    "recv",
    [backends.recv, backends.recv_sized, backends.recv_or_none],
    ids=["recv", "recv_sized", "recv_or_none"],
)
def test_a_reset_connection_raises_connection_reset(
    recv: Callable[[socket.socket, int], bytes | None],
) -> None:
    client, server = tcp_pair()
    with client, server:
        client.send(b"unread")
        # SO_LINGER 0: close() sends RST, and unread data makes sure of it.
        server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        server.close()
        select.select([client], [], [], 5)
        assert outcome(lambda: recv(client, 10)) == (
            "error",
            (ConnectionResetError, errno.ECONNRESET),
        )


@pytest.mark.parametrize(
    "data",
    [b"bytes", bytearray(b"bytearray"), memoryview(b"memoryview")[3:], memoryview(b"")],
    ids=["bytes", "bytearray", "memoryview-slice", "empty"],
)
def test_send_takes_any_contiguous_buffer(
    pair: tuple[socket.socket, socket.socket], data: Any
) -> None:
    a, b = pair
    assert backends.send(a, data) == len(bytes(data))
    if data:
        assert b.recv(100) == bytes(data)


@pytest.mark.parametrize(
    "data", ["text", 12, memoryview(b"abcdef")[::2], None], ids=["str", "int", "strided", "none"]
)
def test_send_refuses_what_the_method_refuses(
    pair: tuple[socket.socket, socket.socket], data: Any
) -> None:
    a, _ = pair
    assert outcome(lambda: backends.send(a, data)) == outcome(lambda: a.send(data))
    assert outcome(lambda: backends.send(a, data))[0] == "error"


def test_send_is_partial_then_would_block_on_a_full_socket(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    chunk = b"z" * (1 << 20)
    sent = 0
    while True:
        result = outcome(lambda: backends.send(a, chunk))
        if result[0] == "error":
            assert result[1][0] is BlockingIOError
            break
        assert 0 < result[1] <= len(chunk)
        sent += result[1]
    assert receive_all(b, sent) == sent


@pytest.mark.parametrize("call", [backends.send, socket.socket.send], ids=["ours", "method"])
def test_send_to_a_closed_peer_fails_as_the_method_does(call: Callable[..., int]) -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.close()
    with a:
        assert outcome(lambda: call(a, b"x")) == ("error", (BrokenPipeError, errno.EPIPE))


def test_recv_into_fills_the_callers_buffer(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    b.send(b"hello world")
    buffer = bytearray(5)
    assert backends.recv_into(a, buffer) == 5
    assert buffer == b"hello"
    view = memoryview(bytearray(20))
    assert backends.recv_into(a, view[2:]) == 6
    assert view[2:8].tobytes() == b" world"


def test_recv_into_refuses_a_read_only_buffer(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    b.send(b"x")
    assert outcome(lambda: backends.recv_into(a, b"read-only")) == outcome(
        lambda: a.recv_into(b"read-only")
    )


def test_a_blocking_socket_still_waits_for_data() -> None:
    # Not the direct path (it would hold the GIL while blocked): the method,
    # which releases it, so another thread's send gets through.
    import threading

    a, b = socket.socketpair()
    with a, b:
        a.settimeout(5)
        timer = threading.Timer(0.05, b.send, (b"late",))
        timer.start()
        try:
            assert backends.recv(a, 10) == b"late"
        finally:
            timer.join()


@pytest.mark.parametrize(
    ("recv", "send"),
    [(backends.recv, backends.send), (backends.recv_sized, backends.send_count)],
    ids=["recv-send", "recv_sized-send_count"],
)
def test_a_socket_subclass_keeps_its_own_methods(
    recv: Callable[[socket.socket, int], bytes], send: Callable[[socket.socket, Any], int]
) -> None:
    calls: list[str] = []

    class Recording(socket.socket):
        def recv(self, size: int, flags: int = 0) -> bytes:
            calls.append("recv")
            return super().recv(size, flags)

        def send(self, data: Any, flags: int = 0) -> int:
            calls.append("send")
            return super().send(data, flags)

    a, b = socket.socketpair()
    with a, b:
        sock = Recording(fileno=a.detach())
        with sock:
            sock.setblocking(False)
            assert send(sock, b"ping") == 4
            assert b.recv(10) == b"ping"
            b.send(b"pong")
            assert recv(sock, 10) == b"pong"
    assert calls == ["send", "recv"]


@pytest.mark.skipif(not hasattr(select, "epoll"), reason="epoll is Linux-only")
def test_epoll_wait_reports_what_epoll_poll_reports() -> None:
    from slipstream.backends.base import READABLE, WRITABLE
    from slipstream.backends.epoll import EpollBackend

    backend = EpollBackend()
    a, b = socket.socketpair()
    try:
        a.setblocking(False)
        backend.set_interest(a.fileno(), READABLE | WRITABLE)
        assert backend.poll(0) == [(a.fileno(), select.EPOLLOUT)]
        b.send(b"x")
        assert backend.poll(1.0) == [(a.fileno(), select.EPOLLIN | select.EPOLLOUT)]
        backend.set_interest(a.fileno(), READABLE)
        a.recv(1)
        assert backend.poll(0.01) == []  # waited (GIL released), nothing came
        backend.close()
        with pytest.raises(ValueError):
            backend.poll(0)  # what a closed select.epoll says
    finally:
        a.close()
        b.close()


@pytest.mark.skipif(not hasattr(select, "epoll"), reason="epoll is Linux-only")
def test_epoll_waits_that_may_sleep_release_the_gil() -> None:
    # Compiled, a wait that may sleep first tries a zero-timeout wait with the
    # GIL held (syscalls.pxd).  Whether that try found nothing or several
    # events came at once, a wait that sleeps must let other threads run
    # (here: the thread that sends what the wait is for) and report what the
    # kernel reports.
    import threading
    import time

    from slipstream.backends.base import READABLE
    from slipstream.backends.epoll import EpollBackend

    def send_later(sock: socket.socket) -> threading.Thread:
        def send() -> None:
            time.sleep(0.05)
            sock.send(b"x")

        thread = threading.Thread(target=send)
        thread.start()
        return thread

    backend = EpollBackend()
    (a, b), (c, d) = socket.socketpair(), socket.socketpair()
    try:
        for sock in (a, c):
            sock.setblocking(False)
            backend.set_interest(sock.fileno(), READABLE)
        for _ in range(2):
            assert backend.poll(0.01) == []  # an empty try (if one was made)
            started = time.monotonic()
            thread = send_later(b)
            assert backend.poll(5.0) == [(a.fileno(), select.EPOLLIN)]
            assert time.monotonic() - started < 2.5  # not held until the timeout
            thread.join()
            a.recv(1)
            b.send(b"y")
            d.send(b"y")  # two at once: tries are made again
            assert sorted(backend.poll(5.0)) == sorted(
                [(a.fileno(), select.EPOLLIN), (c.fileno(), select.EPOLLIN)]
            )
            a.recv(1)
            c.recv(1)
            thread = send_later(d)
            assert backend.poll(5.0) == [(c.fileno(), select.EPOLLIN)]
            thread.join()
            c.recv(1)
    finally:
        backend.close()
        for sock in (a, b, c, d):
            sock.close()


def test_short_and_long_reads_in_turn_keep_their_bytes(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # Compiled, a short read is copied out of a cached buffer and a long one
    # takes the buffer with it: every result must stay what it was when read.
    a, b = pair
    rng = random.Random(7)
    kept = []
    for size in [10, 5000, 4096, 4097, 1, 150_000, 3, 70_000, 2]:
        payload = rng.randbytes(size)
        b.sendall(payload)
        got = b""
        while len(got) < size:
            select.select([a], [], [], 5)
            got += backends.recv(a, 256 * 1024)
        assert got == payload
        kept.append((got, payload))
    assert all(got == payload for got, payload in kept)


@pytest.mark.parametrize("seed", range(3))
def test_reads_keep_their_bytes_whatever_size_they_ask(
    pair: tuple[socket.socket, socket.socket], seed: int
) -> None:
    # Compiled, the cached buffer is as large as the largest read asked of it
    # (at least 64 KiB, at most 256 KiB; a larger ask allocates its own), so
    # asks that grow, shrink and cross those sizes make it grow, serve reads
    # from a larger cache, and hand it over. Interpreted, each read allocates
    # what it asks. Either way every read is what recv() returns.
    a, b = pair
    rng = random.Random(seed)
    asks = [1, 4096, 4097, 65536, 65537, 130_000, 262_144, 262_145, 300_000]
    kept = []
    for _ in range(40):
        size = rng.choice([1, 2, 1000, 4096, 4097, 10_000, 70_000, 200_000])
        ask = rng.choice(asks)
        payload = rng.randbytes(size)
        b.sendall(payload)
        got = b""
        while len(got) < size:
            select.select([a], [], [], 5)
            chunk = backends.recv(a, ask)
            assert 0 < len(chunk) <= ask
            got += chunk
        assert got == payload
        kept.append((got, payload))
    assert all(got == payload for got, payload in kept)


def test_the_first_call_works_with_no_descriptor_to_spare() -> None:
    # Compiled, the first call checks the socket layout on a fresh socketpair;
    # with every descriptor in use (EMFILE) it must still do what recv() does.
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import resource, socket
        a, b = socket.socketpair()
        a.setblocking(False)
        b.send(b"still here")
        from slipstream import backends
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        hogs = []
        try:
            while True:
                hogs.append(open("/dev/null"))
        except OSError:
            pass
        print(backends.recv(a, 100).decode())
        hogs[0].close()
        b.send(b" and after")
        print(backends.recv(a, 100).decode())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["still here", " and after"]


# recv_sized and send_count: the variants the stream engine calls (a C size in,
# a C count out when compiled).  The same situations as above, each compared
# with the socket method.


@pytest.mark.parametrize("size", [1, 1024, 256 * 1024, 256 * 1024 + 1, 0, -1, 1 << 70])
def test_recv_sized_is_recv(pair: tuple[socket.socket, socket.socket], size: int) -> None:
    a, b = pair
    asked = max(size, 1)  # nothing there yet: would block (or refuse the size) alike
    assert outcome(lambda: backends.recv_sized(a, asked)) == outcome(lambda: a.recv(asked))
    payload = bytes(range(256)) * 8
    b.sendall(payload)
    b.shutdown(socket.SHUT_WR)
    got = outcome(lambda: backends.recv_sized(a, size))
    if got[0] == "error":  # a size the method refuses: refused alike, nothing consumed
        assert got == outcome(lambda: a.recv(size))
        assert a.recv(4096) == payload
    else:
        assert got == ("ok", payload[:size])
        assert a.recv(4096) == payload[size:]
    assert backends.recv_sized(a, 100) == b""  # end of stream


def test_send_count_is_send(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    for data in (b"bytes", bytearray(b"bytearray"), memoryview(b"memoryview")[3:], b""):
        assert backends.send_count(a, data) == len(bytes(data))
    assert b.recv(100) == b"bytesbytearrayoryview"
    bad_data: tuple[Any, ...] = ("text", 12, memoryview(b"abcdef")[::2], None)
    for bad in bad_data:
        ours = outcome(functools.partial(backends.send_count, a, bad))
        assert ours == outcome(functools.partial(a.send, bad))
        assert ours[0] == "error"
    chunk = b"z" * (1 << 20)
    sent = 0
    while (result := outcome(lambda: backends.send_count(a, chunk)))[0] == "ok":
        assert 0 < result[1] <= len(chunk)
        sent += result[1]
    assert result == outcome(lambda: a.send(chunk))
    assert result[1][0] is BlockingIOError
    assert receive_all(b, sent) == sent


def test_send_count_and_recv_sized_fail_as_the_methods_do() -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.close()
    with a:
        assert outcome(lambda: backends.send_count(a, b"x")) == outcome(lambda: a.send(b"x"))
        assert outcome(lambda: backends.send_count(a, b"x"))[1] == (BrokenPipeError, errno.EPIPE)
    assert outcome(lambda: backends.send_count(a, b"x")) == ("error", (OSError, errno.EBADF))
    assert outcome(lambda: backends.recv_sized(a, 10)) == ("error", (OSError, errno.EBADF))


# -- sendmsg_count: the stream engine's send of a burst ---------------------------------


def test_sendmsg_count_is_sendmsg(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    parts: list[Any] = [b"head", bytearray(b"er"), memoryview(b"xbodyx")[1:-1], b"", b"!"]
    for count in (len(parts), 3, 1):
        assert backends.sendmsg_count(a, collections.deque(parts), count) == len(
            b"".join(bytes(p) for p in parts[:count])
        )
    assert b.recv(100) == b"headerbody!headerbodyhead"
    # As many buffers as one call takes, more than fit the compiled call's
    # stack arrays (16), bytes and views mixed, in order.
    rng = random.Random(3)
    many: list[Any] = []
    for i in range(1024):
        chunk = rng.randbytes(rng.randrange(1, 40))
        many.append(chunk if i % 3 else memoryview(bytearray(chunk)))
    expected = b"".join(bytes(p) for p in many)
    sent = backends.sendmsg_count(a, collections.deque(many), len(many))
    got = b""
    while len(got) < sent:
        select.select([b], [], [], 5)
        got += b.recv(1 << 20)
    assert sent == len(expected) and got == expected


def test_sendmsg_count_refuses_what_sendmsg_refuses(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, _ = pair
    bad_parts: tuple[list[Any], ...] = (
        [b"ok", "text"],
        [b"ok", 12],
        [memoryview(b"abcdef")[::2], b"ok"],
        [None],
    )
    for bad in bad_parts:
        ours = outcome(
            functools.partial(backends.sendmsg_count, a, collections.deque(bad), len(bad))
        )
        assert ours == outcome(functools.partial(a.sendmsg, bad))
        assert ours[0] == "error"


def test_sendmsg_count_is_partial_then_would_block_and_fails_as_sendmsg_does(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    burst = collections.deque([b"h" * 100, b"z" * (1 << 20)])
    sent = 0
    while (result := outcome(lambda: backends.sendmsg_count(a, burst, 2)))[0] == "ok":
        assert 0 < result[1] <= 100 + (1 << 20)
        sent += result[1]
    assert result == outcome(lambda: a.sendmsg(burst))
    assert result[1][0] is BlockingIOError
    assert receive_all(b, sent) == sent
    b.close()
    assert outcome(lambda: backends.sendmsg_count(a, burst, 2)) == outcome(
        lambda: a.sendmsg(burst)
    )
    assert outcome(lambda: backends.sendmsg_count(a, burst, 2))[1] == (
        BrokenPipeError,
        errno.EPIPE,
    )
    a.close()
    assert outcome(lambda: backends.sendmsg_count(a, burst, 2)) == ("error", (OSError, errno.EBADF))


def test_sendmsg_count_on_a_subclass_is_its_method() -> None:
    calls = []

    class Traced(socket.socket):
        def sendmsg(self, *args: Any, **kwargs: Any) -> int:
            calls.append("sendmsg")
            return super().sendmsg(*args, **kwargs)

    a, b = socket.socketpair()
    with Traced(fileno=a.detach()) as traced, b:
        traced.setblocking(False)
        assert backends.sendmsg_count(traced, collections.deque([b"a", b"b", b"c"]), 2) == 2
        assert b.recv(10) == b"ab"
    assert calls == ["sendmsg"]


# -- recvfrom / sendto: the datagram transport's calls ---------------------------------


@pytest.fixture
def udp() -> Iterator[tuple[socket.socket, socket.socket]]:
    """An IPv4 UDP sender and receiver, non-blocking, the receiver on a loopback port."""
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    sender.bind(("127.0.0.1", 0))
    sender.setblocking(False)
    receiver.setblocking(False)
    yield sender, receiver
    sender.close()
    receiver.close()


def receive(sock: socket.socket, call: Callable[[socket.socket, int], Any]) -> Any:
    select.select([sock], [], [], 5)
    return call(sock, 65536)


def test_the_compiled_datagram_calls_are_in_use_when_built() -> None:
    assert backends.recvfrom is not syscalls.recvfrom or not backends.COMPILED
    assert backends.sendto is not syscalls.sendto or not backends.COMPILED


@pytest.mark.parametrize("size", [0, 1, 2, 1024, 4096, 4097, 65507])
def test_recvfrom_and_sendto_are_the_methods(
    udp: tuple[socket.socket, socket.socket], size: int
) -> None:
    sender, receiver = udp
    address = receiver.getsockname()
    payload = random.Random(size).randbytes(size)
    for data in (payload, bytearray(payload), memoryview(payload)):
        # Two at a time: the receive buffer need not hold more.
        assert backends.sendto(sender, data, address) == sender.sendto(data, address) == size
        ours = receive(receiver, backends.recvfrom)
        theirs = receive(receiver, socket.socket.recvfrom)
        assert ours == theirs == (payload, sender.getsockname())
        assert type(ours[1][0]) is str and type(ours[1][1]) is int
    assert outcome(lambda: backends.recvfrom(receiver, 10)) == outcome(
        lambda: receiver.recvfrom(10)
    )
    assert outcome(lambda: backends.recvfrom(receiver, 10))[1][0] is BlockingIOError


def test_recvfrom_truncates_and_refuses_as_the_method_does(
    udp: tuple[socket.socket, socket.socket],
) -> None:
    sender, receiver = udp
    address = receiver.getsockname()
    for size in (5, 0, -1, 1 << 40):
        sender.sendto(b"0123456789", address)
        sender.sendto(b"0123456789", address)
        select.select([receiver], [], [], 5)
        ours = outcome(functools.partial(backends.recvfrom, receiver, size))
        theirs = outcome(functools.partial(receiver.recvfrom, size))
        assert ours == theirs
        if ours[0] == "ok":
            assert ours[1][0] == b"01234"[: max(size, 0)]  # the rest of the datagram is gone
        else:  # refused alike, nothing consumed
            assert receiver.recvfrom(100)[0] == b"0123456789"
            assert receiver.recvfrom(100)[0] == b"0123456789"


@pytest.mark.parametrize(
    "address",
    [
        "localhost",  # a name: the resolver's, through the method
        "",
        "127.000.000.001",  # leading zeros: CPython's own parser decides
        "127.1",
        "256.0.0.1",
        "<broadcast>",
        "127.0.0.1\0",
        "127.0.0.\u0661",
        70000,
        -1,
        True,
        "x",
        None,
        "tuple",
        "triple",
    ],
)
def test_sendto_takes_every_address_as_the_method_does(
    udp: tuple[socket.socket, socket.socket], address: Any
) -> None:
    sender, receiver = udp
    port = receiver.getsockname()[1]
    target: Any
    if address == "tuple":
        target = ("127.0.0.1",)
    elif address == "triple":
        target = ("127.0.0.1", port, 0)
    elif address in ("x", None):
        target = address
    elif isinstance(address, int):
        target = ("127.0.0.1", address)
    else:
        target = (address, port)
    ours = outcome(lambda: backends.sendto(sender, b"ours", target))
    theirs = outcome(lambda: sender.sendto(b"ours", target))
    if ours[0] == "error" or theirs[0] == "error":
        assert ours == theirs
    else:
        assert ours == theirs == ("ok", 4)


@pytest.mark.parametrize(
    "data", ["text", 12, memoryview(b"abcdef")[::2], None], ids=["str", "int", "strided", "none"]
)
def test_sendto_refuses_what_the_method_refuses(
    udp: tuple[socket.socket, socket.socket], data: Any
) -> None:
    sender, receiver = udp
    for address in (receiver.getsockname(), ("localhost", 9), "x"):
        ours = outcome(functools.partial(backends.sendto, sender, data, address))
        assert ours == outcome(functools.partial(sender.sendto, data, address))
        assert ours[0] == "error"


def test_datagram_calls_on_other_sockets_are_the_methods() -> None:
    # IPv6, a Unix datagram socket, a closed socket, a blocking one: the methods decide.
    made = []
    if socket.has_ipv6:
        try:
            six = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            six.bind(("::1", 0))
        except OSError:
            pass
        else:
            six.setblocking(False)
            made.append((six, six.getsockname()))
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setblocking(False)
    b.setblocking(False)
    made.append((a, None))
    try:
        for sock, own in made:
            if own is not None:
                assert backends.sendto(sock, b"self", own) == 4
                select.select([sock], [], [], 5)
                assert backends.recvfrom(sock, 100) == (b"self", own)
            else:
                b.send(b"unix")
                b.send(b"unix")
                select.select([sock], [], [], 5)
                ours = backends.recvfrom(sock, 100)
                assert ours == sock.recvfrom(100)
                assert ours[0] == b"unix"
        closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        closed.close()
        assert outcome(lambda: backends.recvfrom(closed, 10)) == outcome(
            lambda: closed.recvfrom(10)
        )
        assert outcome(lambda: backends.sendto(closed, b"x", ("127.0.0.1", 9))) == outcome(
            lambda: closed.sendto(b"x", ("127.0.0.1", 9))
        )
    finally:
        for sock, _ in made:
            sock.close()
        b.close()


def test_waiting_after_a_short_read_only_where_it_drains() -> None:
    # sock_recv waits at once after a short read only where the wait would
    # see what is still queued: always interpreted (every wait re-arms, and
    # the kernel reports what is there), compiled only on TCP, where a short
    # read means nothing more was queued (edge-triggered waits see only news).
    compiled = backends.COMPILED
    with socket.create_server(("127.0.0.1", 0)) as listener:
        tcp = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        unix_a, unix_b = socket.socketpair()
        with tcp, accepted, udp, unix_a, unix_b:
            for sock in (tcp, accepted, udp, unix_a):
                sock.setblocking(False)
            assert backends.wait_after_short_read(tcp)
            assert backends.wait_after_short_read(accepted)
            assert backends.wait_after_short_read(udp) is not compiled
            assert backends.wait_after_short_read(unix_a) is not compiled
            assert backends.wait_after_short_read(unix_b) is not compiled  # blocking
            tcp.close()
            assert backends.wait_after_short_read(tcp) is not compiled  # closed


# -- recv_or_none: sock_recv's try before it waits -------------------------------------


def test_recv_or_none_is_recv_with_none_for_would_block(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    assert outcome(lambda: a.recv(100))[1][0] is BlockingIOError  # nothing there: would block
    assert backends.recv_or_none(a, 100) is None
    b.send(b"payload")
    assert backends.recv_or_none(a, 100) == b"payload"
    assert backends.recv_or_none(a, 100) is None
    sizes: tuple[Any, ...] = (0, -1, 1 << 70, "100")
    for size in sizes:  # zero as the method answers it; what it refuses, refused alike
        ours = outcome(functools.partial(backends.recv_or_none, a, size))
        assert ours == outcome(functools.partial(a.recv, size))
    b.shutdown(socket.SHUT_WR)
    assert backends.recv_or_none(a, 100) == b""  # end of stream, not None
