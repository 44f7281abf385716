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
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from slipstream.backends import READABLE, WRITABLE

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
