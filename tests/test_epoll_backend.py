"""The epoll backend's one-shot registrations: level-triggered behaviour kept, and safe.

The backend registers a descriptor whose watch came and went before with
EPOLLONESHOT, and leaves a registration the kernel has disarmed in the epoll
set ("parked") instead of deleting it.  These tests pin down what must hold
whatever the backend does underneath:

* a watcher is woken for as long as it keeps its interest and the descriptor
  is ready (level-triggered), on the first registration of a number and on
  later ones alike;
* a parked registration whose descriptor is closed and whose number is reused
  by another socket never hides that socket's readiness (no hang);
* a parked registration whose file outlives the descriptor (``dup()``) never
  reports anything after the descriptor is closed (no spin);
* and the loop-level operations built on it behave the same on asyncio.

No test measures time: readiness is checked with zero-timeout polls, and the
loop-level tests only bound their waits (``GUARD``) so that a lost wake-up
fails the test instead of hanging the suite.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from slipstream.backends import READ_EVENTS, READABLE, WRITABLE, WRITE_EVENTS

pytestmark = pytest.mark.skipif(not hasattr(select, "epoll"), reason="epoll is Linux-only")

Run = Callable[[Coroutine[Any, Any, Any]], Any]

GUARD = 30.0  # seconds; a hang guard, never reached when the loop is right


# How each test's backend is asked: poll() (the pairs) or poll_ready() (the
# loop's way, compiled straight from the kernel's events); every test runs both.
_POLL_METHODS: dict[int, str] = {}


@pytest.fixture(params=["poll", "poll_ready"])
def backend(request: pytest.FixtureRequest) -> Iterator[Any]:
    from slipstream.backends.epoll import EpollBackend

    epoll = EpollBackend()
    _POLL_METHODS[id(epoll)] = request.param
    yield epoll
    del _POLL_METHODS[id(epoll)]
    epoll.close()


def pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """A connected TCP pair on loopback, non-blocking (sock_recv's short-read rule is TCP's)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        a = socket.create_connection(listener.getsockname())
        b, _ = listener.accept()
    for sock in (a, b):
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return a, b


def ready(backend: Any) -> dict[int, int]:
    """What a zero-timeout poll reports: fd -> READABLE / WRITABLE bits (or the raw mask)."""
    if _POLL_METHODS[id(backend)] == "poll":
        return dict(backend.poll(0))
    readers = {fd: (fd, READABLE) for fd in range(4096)}
    writers = {fd: (fd, WRITABLE) for fd in range(4096)}
    handles: list[tuple[int, int]] = []
    count = backend.poll_ready(0, readers, writers, handles)
    reported: dict[int, int] = {}
    for fd, bit in handles:
        reported[fd] = reported.get(fd, 0) | bit
    assert count == len(reported)  # one event per descriptor, each dispatched
    return reported


def cycle(backend: Any, sock: socket.socket, peer: socket.socket) -> None:
    """One ``sock_recv``-style wait: watch, get woken, read, stop watching."""
    fd = sock.fileno()
    backend.set_interest(fd, READABLE)
    assert fd not in ready(backend)
    peer.send(b"x")
    assert ready(backend)[fd] & READABLE
    assert sock.recv(10) == b"x"
    backend.set_interest(fd, 0)


def test_a_lasting_watcher_is_level_triggered(backend: Any) -> None:
    a, b = pair()
    with a, b:
        backend.set_interest(a.fileno(), READABLE)
        b.send(b"data")
        for _ in range(3):  # not read: reported again and again
            assert ready(backend)[a.fileno()] & READABLE
        a.recv(10)
        assert a.fileno() not in ready(backend)


@pytest.mark.parametrize("polls_between", [0, 5])
def test_a_lasting_watcher_on_a_reused_number_is_level_triggered(
    backend: Any, polls_between: int
) -> None:
    a, b = pair()
    with a, b:
        cycle(backend, a, b)  # short waits: the number ends up parked, one-shot
        cycle(backend, a, b)
        for _ in range(polls_between):
            assert ready(backend) == {}
        backend.set_interest(a.fileno(), READABLE)
        b.send(b"data")
        for _ in range(3):
            assert ready(backend)[a.fileno()] & READABLE
        a.recv(10)
        assert a.fileno() not in ready(backend)
        b.send(b"more")  # and woken again on new data, without any set_interest
        assert ready(backend)[a.fileno()] & READABLE


def test_repeated_short_waits_are_each_woken(backend: Any) -> None:
    a, b = pair()
    with a, b:
        for _ in range(5):
            cycle(backend, a, b)
        b.send(b"unwatched")
        assert a.fileno() not in ready(backend)  # parked: silent


def waited(backend: Any, timeout: float) -> dict[int, int]:
    """What a poll that may sleep for ``timeout`` seconds reports, as :func:`ready` does."""
    if _POLL_METHODS[id(backend)] == "poll":
        return dict(backend.poll(timeout))
    readers = {fd: (fd, READABLE) for fd in range(4096)}
    handles: list[tuple[int, int]] = []
    backend.poll_ready(timeout, readers, {}, handles)
    return {fd: bit for fd, bit in handles}


def test_waits_that_may_sleep_find_events_after_waits_that_found_none(backend: Any) -> None:
    # Compiled, a wait that may sleep first peeks without releasing the GIL,
    # except for a few waits after a peek found nothing (an idle loop's): both
    # ways must report what is ready, whether it came before the wait or during.
    a, b = pair()
    with a, b:
        backend.set_interest(a.fileno(), READABLE)
        for round_number in range(24):
            assert waited(backend, 0.001) == {}  # nothing yet: a miss
            if round_number % 2:
                b.send(b"x")  # ready before the wait
                found = waited(backend, GUARD)
            else:
                timer = threading.Timer(0.005, b.send, (b"x",))  # ready during the wait
                timer.start()
                found = waited(backend, GUARD)
                timer.join()
            assert found == {a.fileno(): READABLE}
            assert a.recv(10) == b"x"


def test_a_wait_removed_before_its_event_is_gone(backend: Any) -> None:
    a, b = pair()
    with a, b:
        cycle(backend, a, b)
        backend.set_interest(a.fileno(), READABLE)
        backend.set_interest(a.fileno(), 0)  # cancelled before anything came
        b.send(b"x")
        assert a.fileno() not in ready(backend)
        assert a.recv(10) == b"x"
        cycle(backend, a, b)


def test_both_directions_on_a_one_shot_registration(backend: Any) -> None:
    a, b = pair()
    with a, b:
        cycle(backend, a, b)
        fd = a.fileno()
        backend.set_interest(fd, READABLE | WRITABLE)
        assert ready(backend)[fd] & WRITABLE  # the send buffer has room
        backend.set_interest(fd, READABLE)  # the writer is done; the reader waits on
        assert fd not in ready(backend)
        b.send(b"x")
        assert ready(backend)[fd] & READABLE


def test_a_closed_and_reused_number_is_registered_again(backend: Any) -> None:
    a, b = pair()
    cycle(backend, a, b)  # a's registration is parked
    number = a.fileno()
    a.close()
    b.close()
    c, d = pair()
    with c, d:
        if c.fileno() != number:  # make the new socket take the old number
            os.dup2(c.fileno(), number)
            c.close()
            c = socket.socket(fileno=number)
        assert c.fileno() == number
        backend.set_interest(number, READABLE)
        assert number not in ready(backend)
        d.send(b"new")
        assert ready(backend)[number] & READABLE  # not hidden by the old record


def test_a_closed_number_whose_file_lives_on_stays_silent(backend: Any) -> None:
    a, b = pair()
    with b:
        cycle(backend, a, b)  # parked
        alive = os.dup(a.fileno())  # the file outlives a's descriptor
        try:
            a.close()
            b.send(b"x")
            assert ready(backend) == {}  # a stale registration would report this forever
            # Its number reused and watched by another socket: only that one counts.
            c, d = pair()
            with c, d:
                backend.set_interest(c.fileno(), READABLE)
                b.send(b"y")
                assert c.fileno() not in ready(backend)
                d.send(b"z")
                assert ready(backend)[c.fileno()] & READABLE
        finally:
            os.close(alive)


def test_a_closed_number_is_refused_and_forgotten(backend: Any) -> None:
    a, b = pair()
    with b:
        cycle(backend, a, b)  # parked
        number = a.fileno()
        a.close()
        with pytest.raises(OSError):
            backend.set_interest(number, READABLE)
        assert ready(backend) == {}


def test_a_watcher_closed_without_being_removed_is_forgotten(backend: Any) -> None:
    a, b = pair()
    with b:
        cycle(backend, a, b)
        backend.set_interest(a.fileno(), READABLE)
        b.send(b"x")
        assert a.fileno() in ready(backend)  # reported; still wanted
        a.close()  # the caller's bug, but the next poll must not raise or spin
        assert ready(backend) == {}
        assert ready(backend) == {}


# -- the same, through the loop (and on asyncio, for reference) ----------------------


def test_sock_recv_on_a_reused_descriptor(run: Run) -> None:
    async def main() -> list[bytes]:
        loop = asyncio.get_running_loop()
        received = []
        for round_ in range(4):
            a, b = pair()
            with a, b:
                for message in (b"one", b"two"):
                    receiving = asyncio.ensure_future(loop.sock_recv(a, 100))
                    await asyncio.sleep(0)  # waiting: nothing was sent yet
                    b.send(message + str(round_).encode())
                    received.append(await asyncio.wait_for(receiving, GUARD))
        return received

    assert run(main()) == [m + str(r).encode() for r in range(4) for m in (b"one", b"two")]


def test_sock_recv_after_the_previous_socket_was_duplicated_and_closed(run: Run) -> None:
    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        a, b = pair()
        with b:
            receiving = asyncio.ensure_future(loop.sock_recv(a, 100))
            await asyncio.sleep(0)
            b.send(b"first")
            assert await asyncio.wait_for(receiving, GUARD) == b"first"
            alive = a.dup()
            a.close()
            with alive:
                b.send(b"for the duplicate")  # must not wake anything
                c, d = pair()
                with c, d:
                    receiving = asyncio.ensure_future(loop.sock_recv(c, 100))
                    for _ in range(3):
                        await asyncio.sleep(0)
                    assert not receiving.done()
                    d.send(b"second")
                    return await asyncio.wait_for(receiving, GUARD)

    assert run(main()) == b"second"


def test_cancelled_sock_recv_then_a_new_one(run: Run) -> None:
    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        a, b = pair()
        with a, b:
            first = asyncio.ensure_future(loop.sock_recv(a, 100))
            await asyncio.sleep(0)
            b.send(b"early")
            assert await asyncio.wait_for(first, GUARD) == b"early"
            waiting = asyncio.ensure_future(loop.sock_recv(a, 100))
            await asyncio.sleep(0)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            b.send(b"late")
            return await asyncio.wait_for(loop.sock_recv(a, 100), GUARD)

    assert run(main()) == b"late"


# -- edge-triggered registrations for the sock_* waits (watch_edges) -----------------
#
# Compiled, watch_edges() registers edge-triggered and keeps the registration
# between the waits of one socket; interpreted it is set_interest().  The
# tests hold on both builds: what a caller that retries until EAGAIN sees must
# not depend on it.  A kept registration may still report a socket nobody
# waits for, which the loop, having no callback for it, ignores; so these tests
# poll as the loop does, with its maps of callbacks (Watches).


class Watches:
    """The loop's side of a backend: who waits for what, and what a poll wakes."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.bits: dict[int, int] = {}

    def edge(self, sock: socket.socket, bits: int) -> None:
        fd = sock.fileno()
        self.bits[fd] = self.bits.get(fd, 0) | bits
        self.backend.watch_edges(fd, self.bits[fd], sock)

    def level(self, fd: int, bits: int) -> None:
        self.bits[fd] = self.bits.get(fd, 0) | bits
        self.backend.set_interest(fd, self.bits[fd])

    def stop(self, fd: int, bits: int = READABLE | WRITABLE) -> None:
        self.bits[fd] = self.bits.get(fd, 0) & ~bits
        self.backend.set_interest(fd, self.bits[fd])
        if not self.bits[fd]:
            del self.bits[fd]

    def ready(self) -> dict[int, int]:
        """What a zero-timeout poll wakes: fd -> READABLE / WRITABLE bits."""
        if _POLL_METHODS[id(self.backend)] == "poll":
            reported: dict[int, int] = {}
            for fd, mask in self.backend.poll(0):
                bits = self.bits.get(fd, 0)
                woken = (READABLE if mask & READ_EVENTS and bits & READABLE else 0) | (
                    WRITABLE if mask & WRITE_EVENTS and bits & WRITABLE else 0
                )
                if woken:
                    reported[fd] = woken
            return reported
        readers = {fd: (fd, READABLE) for fd, bits in self.bits.items() if bits & READABLE}
        writers = {fd: (fd, WRITABLE) for fd, bits in self.bits.items() if bits & WRITABLE}
        handles: list[tuple[int, int]] = []
        self.backend.poll_ready(0, readers, writers, handles)
        reported = {}
        for fd, bit in handles:
            reported[fd] = reported.get(fd, 0) | bit
        return reported


def edge_cycle(watches: Watches, sock: socket.socket, peer: socket.socket) -> None:
    """One ``sock_recv``-style wait under the edge promise: watch, woken, read to EAGAIN, stop."""
    fd = sock.fileno()
    watches.edge(sock, READABLE)
    assert fd not in watches.ready()
    peer.send(b"x")
    assert watches.ready()[fd] & READABLE
    assert sock.recv(10) == b"x"
    with pytest.raises(BlockingIOError):
        sock.recv(10)
    watches.stop(fd)


def test_edge_waits_on_one_socket_are_each_woken(backend: Any) -> None:
    watches = Watches(backend)
    a, b = pair()
    with a, b:
        for _ in range(5):
            edge_cycle(watches, a, b)
        b.send(b"unwatched")
        assert watches.ready() == {}


@pytest.mark.parametrize("polls_between", [0, 1, 3])
def test_data_that_came_between_edge_waits_is_reported_to_the_next(
    backend: Any, polls_between: int
) -> None:
    # Data arrives while no wait is on: a kept registration's only report of
    # it goes to nobody.  The next wait, which (as sock_recv after a short
    # read) does not try first, must still be woken.
    watches = Watches(backend)
    a, b = pair()
    with a, b:
        edge_cycle(watches, a, b)
        b.send(b"between")
        for _ in range(polls_between):
            assert watches.ready() == {}
        watches.edge(a, READABLE)
        assert watches.ready()[a.fileno()] & READABLE
        assert a.recv(100) == b"between"


def test_the_end_of_the_stream_between_edge_waits_is_reported(backend: Any) -> None:
    watches = Watches(backend)
    a, b = pair()
    with a:
        edge_cycle(watches, a, b)
        b.close()
        assert watches.ready() == {}
        watches.edge(a, READABLE)
        assert watches.ready()[a.fileno()] & READABLE
        assert a.recv(100) == b""


def test_the_end_of_the_stream_that_came_with_the_data_is_reported_next(backend: Any) -> None:
    # Data and the end of the stream arrive before one poll: one report.  The
    # read takes the data and returns short; the end is the next wait's.
    watches = Watches(backend)
    a, b = pair()
    with a:
        watches.edge(a, READABLE)
        b.send(b"last words")
        b.close()
        assert watches.ready()[a.fileno()] & READABLE
        assert a.recv(100) == b"last words"
        watches.stop(a.fileno())
        watches.edge(a, READABLE)
        assert watches.ready()[a.fileno()] & READABLE
        assert a.recv(100) == b""


def test_an_edge_wait_on_a_reused_number_is_a_new_registration(backend: Any) -> None:
    watches = Watches(backend)
    a, b = pair()
    with b:
        edge_cycle(watches, a, b)
        number = a.fileno()
        a.close()
        c, d = pair()
        with c, d:
            if number not in (c.fileno(), d.fileno()):
                pytest.skip("the kernel gave the pair other numbers")
            mine, peer = (c, d) if c.fileno() == number else (d, c)
            peer.send(b"already there")  # readable before the wait: reported at once
            watches.edge(mine, READABLE)
            assert watches.ready()[number] & READABLE
            assert mine.recv(100) == b"already there"


def test_a_stale_edge_registration_is_never_taken_for_the_new_owner(backend: Any) -> None:
    watches = Watches(backend)
    a, b = pair()
    with b:
        edge_cycle(watches, a, b)
        number = a.fileno()
        alive = os.dup(number)  # the file outlives a's descriptor: its registration too
        try:
            a.close()
            b.send(b"x")
            assert watches.ready() == {}
            c, d = pair()
            with c, d:
                if number not in (c.fileno(), d.fileno()):
                    pytest.skip("the kernel gave the pair other numbers")
                mine, peer = (c, d) if c.fileno() == number else (d, c)
                watches.edge(mine, READABLE)
                b.send(b"y")  # an event of the stale registration, with the same number
                assert watches.ready() == {}
                peer.send(b"z")
                assert watches.ready()[number] & READABLE
                assert mine.recv(100) == b"z"
        finally:
            os.close(alive)


def test_a_level_watch_after_edge_waits_is_level_triggered(backend: Any) -> None:
    watches = Watches(backend)
    a, b = pair()
    with a, b:
        edge_cycle(watches, a, b)
        edge_cycle(watches, a, b)
        watches.level(a.fileno(), READABLE)  # add_reader: no promise to read
        b.send(b"data")
        for _ in range(3):
            assert watches.ready()[a.fileno()] & READABLE
        a.recv(10)
        assert watches.ready() == {}
        watches.stop(a.fileno())
        b.send(b"more")
        assert watches.ready() == {}


def test_an_edge_wait_to_write_joins_a_read_registration(backend: Any) -> None:
    watches = Watches(backend)
    a, b = pair()
    with a, b:
        fd = a.fileno()
        edge_cycle(watches, a, b)
        watches.edge(a, READABLE)
        watches.edge(a, WRITABLE)
        assert watches.ready() == {fd: WRITABLE}  # room to write, and nothing to read
        watches.stop(fd, WRITABLE)
        with pytest.raises(BlockingIOError):
            while True:
                a.send(b"x" * 65536)
        watches.edge(a, WRITABLE)  # full: woken once the peer makes room
        assert watches.ready() == {}
        while True:
            try:
                b.recv(1 << 20)
            except BlockingIOError:
                break
        assert watches.ready() == {fd: WRITABLE}
        watches.stop(fd)


def test_an_owner_without_weak_references_is_watched_level_triggered(backend: Any) -> None:
    a, b = pair()
    with a, b:
        backend.watch_edges(a.fileno(), READABLE, 12345)  # an int: no weak reference
        b.send(b"data")
        for _ in range(2):  # not read: reported again, as set_interest does
            assert ready(backend)[a.fileno()] & READABLE
        backend.set_interest(a.fileno(), 0)


# -- the same, through the loop's sock_* operations (and on asyncio, for reference) ----


def test_sock_recv_after_a_short_read_gets_data_sent_between_waits(run: Run) -> None:
    async def main() -> list[bytes]:
        loop = asyncio.get_running_loop()
        a, b = tcp_pair()
        received = []
        with a, b:
            receiving = asyncio.ensure_future(loop.sock_recv(a, 100))
            await asyncio.sleep(0)
            b.send(b"short")  # less than asked: the next sock_recv waits without trying
            received.append(await asyncio.wait_for(receiving, GUARD))
            b.send(b"between")
            await asyncio.sleep(0.01)  # the loop polls while nobody waits on a
            received.append(await asyncio.wait_for(loop.sock_recv(a, 100), GUARD))
            b.close()
            received.append(await asyncio.wait_for(loop.sock_recv(a, 100), GUARD))
            received.append(await asyncio.wait_for(loop.sock_recv(a, 100), GUARD))
        return received

    assert run(main()) == [b"short", b"between", b"", b""]


def test_sock_recv_after_a_short_read_without_a_wait_gets_later_data(run: Run) -> None:
    # A full read, then a short one made at once (no wait before it: the
    # socket may hold more after a full read), then data that comes only after
    # both: the third receive waits without trying, and must be woken.
    async def main() -> list[bytes]:
        loop = asyncio.get_running_loop()
        a, b = tcp_pair()
        received = []
        with a, b:
            b.sendall(b"f" * 100 + b"short")
            await asyncio.sleep(0.01)  # all of it queued before the first receive
            received.append(await asyncio.wait_for(loop.sock_recv(a, 100), GUARD))
            received.append(await asyncio.wait_for(loop.sock_recv(a, 100), GUARD))
            receiving = asyncio.ensure_future(loop.sock_recv(a, 100))
            await asyncio.sleep(0.01)  # the loop polls while it waits
            b.send(b"later")
            received.append(await asyncio.wait_for(receiving, GUARD))
            b.send(b"between")
            await asyncio.sleep(0.01)  # and while nobody waits
            received.append(await asyncio.wait_for(loop.sock_recv(a, 100), GUARD))
        return received

    assert run(main()) == [b"f" * 100, b"short", b"later", b"between"]


def test_sock_recv_sees_the_end_that_came_with_the_last_data(run: Run) -> None:
    async def main() -> list[bytes]:
        loop = asyncio.get_running_loop()
        a, b = tcp_pair()
        with a:
            receiving = asyncio.ensure_future(loop.sock_recv(a, 100))
            await asyncio.sleep(0)
            b.send(b"last words")
            b.close()  # both before the loop polls again
            first = await asyncio.wait_for(receiving, GUARD)
            return [first, await asyncio.wait_for(loop.sock_recv(a, 100), GUARD)]

    assert run(main()) == [b"last words", b""]


def test_sock_recv_of_datagrams_queued_together(run: Run) -> None:
    # A datagram socket returns one datagram a call, however many are queued:
    # a read shorter than asked says nothing of what is left.
    async def main() -> list[bytes]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        a.setblocking(False)
        with a, b:
            receiving = asyncio.ensure_future(loop.sock_recv(a, 100))
            await asyncio.sleep(0)
            b.send(b"one")
            b.send(b"two")  # both before the loop polls again
            first = await asyncio.wait_for(receiving, GUARD)
            return [first, await asyncio.wait_for(loop.sock_recv(a, 100), GUARD)]

    assert run(main()) == [b"one", b"two"]


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
def test_a_sock_recv_cancelled_around_its_wake_up_leaves_no_data_unseen(
    run: Run, turns: int
) -> None:
    # However the cancellation falls against the event (before the poll, after
    # it but before the callback ran, after the callback), data still in the
    # socket is the next receive's.  (Data the cancelled receive had already
    # read is lost, on asyncio too: the wait's result is dropped.)
    async def main() -> bytes | None:
        loop = asyncio.get_running_loop()
        a, b = tcp_pair()
        with a, b:
            first = asyncio.ensure_future(loop.sock_recv(a, 100))
            await asyncio.sleep(0)
            b.send(b"short")
            assert await asyncio.wait_for(first, GUARD) == b"short"
            waiting = asyncio.ensure_future(loop.sock_recv(a, 100))
            await asyncio.sleep(0)
            b.send(b"late")
            for _ in range(turns):
                await asyncio.sleep(0)
            if not waiting.cancel():
                return await waiting
            with pytest.raises(asyncio.CancelledError):
                await waiting
            try:
                a.recv(100, socket.MSG_PEEK)
            except BlockingIOError:
                return None  # read by the cancelled receive
            return await asyncio.wait_for(loop.sock_recv(a, 100), GUARD)

    assert run(main()) in (b"late", None)


def test_add_reader_after_sock_recv_is_level_triggered(run: Run) -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        a, b = pair()
        with a, b:
            for message in (b"one", b"two"):
                receiving = asyncio.ensure_future(loop.sock_recv(a, 100))
                await asyncio.sleep(0)
                b.send(message)
                assert await asyncio.wait_for(receiving, GUARD) == message
            calls = 0
            woken = asyncio.Event()

            def readable() -> None:  # reads nothing: level-triggered means called again
                nonlocal calls
                calls += 1
                if calls == 3:
                    woken.set()

            loop.add_reader(a, readable)
            b.send(b"unread")
            await asyncio.wait_for(woken.wait(), GUARD)
            loop.remove_reader(a)
            assert a.recv(100) == b"unread"
            return calls

    assert run(main()) >= 3


def test_a_transport_on_a_socket_used_by_sock_recv(run: Run) -> None:
    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        a, b = pair()
        with b:
            receiving = asyncio.ensure_future(loop.sock_recv(a, 100))
            await asyncio.sleep(0)
            b.send(b"raw")
            assert await asyncio.wait_for(receiving, GUARD) == b"raw"
            got = loop.create_future()

            class Keep(asyncio.Protocol):
                def data_received(self, data: bytes) -> None:
                    if not got.done():
                        got.set_result(data)

            transport, _ = await loop.create_connection(Keep, sock=a)
            b.send(b"framed")
            try:
                return await asyncio.wait_for(got, GUARD)
            finally:
                transport.close()

    assert run(main()) == b"framed"


def test_sock_sendall_waits_for_room_again_and_again(run: Run) -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        a, b = pair()
        total = 0
        with a, b:
            payload = bytes(range(256)) * 4096  # 1 MiB: more than the socket holds

            async def drain() -> bytes:
                received = bytearray()
                while len(received) < 3 * len(payload):
                    received += await loop.sock_recv(b, 1 << 16)
                return bytes(received)

            reading = asyncio.ensure_future(drain())
            for _ in range(3):
                await asyncio.wait_for(loop.sock_sendall(a, payload), GUARD)
            data = await asyncio.wait_for(reading, GUARD)
            assert data == payload * 3
            total = len(data)
        return total

    assert run(main()) == 3 * 1024 * 1024
