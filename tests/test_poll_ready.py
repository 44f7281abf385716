"""``poll_ready``: a backend's poll with the dispatch done, as ``poll`` then ``collect_ready``.

The loop asks its backend for the handles of the ready descriptors in one call
(compiled epoll builds no ``(fd, events)`` pair on the way).  What must hold,
on every backend and on one that only has ``poll``: the handles appended are
exactly those ``collect_ready`` makes of ``poll``'s events, a descriptor's
reader before its writer, nothing for a descriptor that has no handle in the
map, and the count is the number of events.
"""

from __future__ import annotations

import asyncio
import select
import socket
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

import slipstream
from slipstream.backends import (
    READABLE,
    WRITABLE,
    IOBackend,
    PollingBackend,
    ReadyBackend,
    collect_ready,
    complete_backend,
    create_backend,
)

BACKENDS = ["selector"] + (["epoll"] if hasattr(select, "epoll") else [])


class PollOnly:
    """A backend written before poll_ready: only the original interface."""

    def __init__(self, real: PollingBackend) -> None:
        self._real = real
        self.name = f"poll-only:{real.name}"

    def set_interest(self, fd: int, events: int) -> None:
        self._real.set_interest(fd, events)

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        return self._real.poll(timeout)

    def fileno(self) -> int:
        return self._real.fileno()

    def close(self) -> None:
        self._real.close()


class Foreign(PollOnly):
    """A whole IOBackend (poll_ready too) that does not derive from ReadyBackend."""

    def __init__(self, real: IOBackend) -> None:
        super().__init__(real)
        self._full = real
        self.calls = 0

    def poll_ready(
        self,
        timeout: float | None,
        readers: dict[int, Any],
        writers: dict[int, Any],
        ready: list[Any],
    ) -> int:
        self.calls += 1
        return self._full.poll_ready(timeout, readers, writers, ready)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[IOBackend]:
    real = create_backend(request.param)
    yield real
    real.close()


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    made = [socket.socketpair() for _ in range(6)]
    for a, b in made:
        a.setblocking(False)
        b.setblocking(False)
    yield made
    for a, b in made:
        a.close()
        b.close()


def watch(backend: IOBackend, pairs: list[tuple[socket.socket, socket.socket]]) -> list[int]:
    """Six descriptors: read-only, write-only and both, half of them with data waiting."""
    fds = []
    for number, (a, b) in enumerate(pairs):
        interest = (READABLE, WRITABLE, READABLE | WRITABLE)[number % 3]
        backend.set_interest(a.fileno(), interest)
        if number % 2:
            b.send(b"x")
        fds.append(a.fileno())
    return fds


def test_poll_ready_is_collect_ready_of_poll(
    backend: IOBackend, pairs: list[tuple[socket.socket, socket.socket]]
) -> None:
    fds = watch(backend, pairs)
    # Handles for some descriptors only: the others must add nothing.
    readers = {fd: ("reader", fd) for fd in fds[::2] + fds[1::4]}
    writers = {fd: ("writer", fd) for fd in fds[1:]}
    expected: list[tuple[str, int]] = []
    expected_count = collect_ready(backend.poll(0), readers, writers, expected)
    assert expected_count == len(fds) - 1  # the read-only one without data: silent
    # Nothing was read: the same descriptors are ready again, level-triggered.
    got: list[tuple[str, int]] = [("already", -1)]
    count = backend.poll_ready(0, readers, writers, got)
    assert got[0] == ("already", -1)  # appended to, never cleared
    assert count == expected_count
    assert sorted(got[1:]) == sorted(expected)
    for fd in fds:
        mine = [kind for kind, number in got if number == fd]
        assert mine in ([], ["reader"], ["writer"], ["reader", "writer"])  # reader first


def test_a_poll_only_backend_is_not_an_io_backend() -> None:
    real = create_backend("selector")
    try:
        assert not isinstance(PollOnly(real), IOBackend)
        assert isinstance(real, IOBackend)
        assert complete_backend(real) is real
        assert isinstance(complete_backend(PollOnly(real)), IOBackend)
    finally:
        real.close()


def test_a_completed_poll_only_backend(
    backend: IOBackend, pairs: list[tuple[socket.socket, socket.socket]]
) -> None:
    fds = watch(backend, pairs)
    readers = {fd: ("reader", fd) for fd in fds}
    writers = {fd: ("writer", fd) for fd in fds}
    native: list[tuple[str, int]] = []
    native_count = complete_backend(backend).poll_ready(0, readers, writers, native)
    fallback: list[tuple[str, int]] = []
    completed = complete_backend(PollOnly(backend))
    assert completed.name == "poll-only:" + backend.name
    fallback_count = completed.poll_ready(0, readers, writers, fallback)
    assert native_count == fallback_count == len(fds) - 1
    assert sorted(native) == sorted(fallback)
    assert ("writer", fds[1]) in native and ("reader", fds[1]) not in native
    assert ("reader", fds[3]) in native and ("writer", fds[3]) not in native


def test_nothing_ready_adds_nothing(backend: IOBackend) -> None:
    a, b = socket.socketpair()
    with a, b:
        backend.set_interest(a.fileno(), READABLE)
        got: list[int] = []
        assert backend.poll_ready(0, {a.fileno(): 1}, {}, got) == 0
        assert got == []
        b.send(b"x")
        assert backend.poll_ready(0, {a.fileno(): 1}, {}, got) == 1
        assert got == [1]


def test_a_closed_backend_refuses_as_poll_does(backend: IOBackend) -> None:
    backend.close()
    with pytest.raises(Exception) as by_poll:
        backend.poll(0)
    with pytest.raises(Exception) as by_poll_ready:
        backend.poll_ready(0, {}, {}, [])
    assert type(by_poll_ready.value) is type(by_poll.value)
    assert str(by_poll_ready.value) == str(by_poll.value)


def test_a_loop_on_a_poll_only_backend_serves_connections() -> None:
    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)

    async def main() -> list[bytes]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answers = []
        for message in (b"one", b"two", b"three" * 1000):
            writer.write(message)
            answers.append(await asyncio.wait_for(reader.readexactly(len(message)), 10))
        await asyncio.sleep(0.01)  # a timer, too
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return answers

    def factory() -> Any:
        return slipstream.EventLoop(backend=PollOnly(create_backend(BACKENDS[-1])))

    with asyncio.Runner(loop_factory=factory) as runner:
        assert runner.run(main()) == [b"one", b"two", b"three" * 1000]


def test_the_core_always_gets_a_ready_backend(backend: IOBackend) -> None:
    # The compiled core holds its backend as a ReadyBackend (its C type when
    # compiled): the built-in backends are one, anything else is wrapped.
    assert isinstance(backend, ReadyBackend)
    assert complete_backend(backend) is backend
    for other in (PollOnly(backend), Foreign(backend)):
        completed = complete_backend(other)
        assert isinstance(completed, ReadyBackend)
        assert isinstance(completed, IOBackend)
        assert completed.name == other.name


def test_a_ready_backend_must_override_its_methods() -> None:
    class Half(ReadyBackend):
        pass

    with pytest.raises(NotImplementedError, match="Half does not implement poll_ready"):
        Half().poll_ready(0, {}, {}, [])
    with pytest.raises(NotImplementedError, match="Half does not implement set_interest"):
        Half().set_interest(0, READABLE)


def test_a_foreign_io_backend_keeps_its_own_poll_ready() -> None:
    real = create_backend(BACKENDS[-1])
    foreign = Foreign(real)
    loop = slipstream.EventLoop(backend=foreign)
    try:
        assert not isinstance(foreign, ReadyBackend)
        assert loop.run_until_complete(asyncio.sleep(0.001, "slept")) == "slept"
        assert foreign.calls > 0  # the loop polled through the backend's own method
    finally:
        loop.close()


def test_a_python_subclass_of_the_compiled_backend_is_called_through_its_override() -> None:
    # A compiled backend subclassed in Python: the core's C call must still
    # reach the Python override (cpdef dispatch), not the C method underneath.
    if not hasattr(select, "epoll"):
        pytest.skip("no epoll")
    from slipstream.backends.epoll import EpollBackend

    class Counting(EpollBackend):
        calls = 0
        interests: ClassVar[list[tuple[int, int]]] = []

        edging = False

        def set_interest(self, fd: int, events: int) -> None:
            if not self.edging:  # (the pure watch_edges is set_interest)
                Counting.interests.append((fd, events))
            super().set_interest(fd, events)

        def watch_edges(self, fd: int, events: int, owner: object) -> None:
            Counting.interests.append((fd, events | 0x100))  # marked: the edge call
            self.edging = True
            try:
                super().watch_edges(fd, events, owner)
            finally:
                self.edging = False

        def poll_ready(
            self,
            timeout: float | None,
            readers: dict[int, Any],
            writers: dict[int, Any],
            ready: list[Any],
        ) -> int:
            Counting.calls += 1
            return super().poll_ready(timeout, readers, writers, ready)

    async def wait_readable() -> bytes:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            loop.call_later(0.01, b.send, b"ping")  # so that sock_recv must wait
            return await loop.sock_recv(a, 16)

    loop = slipstream.EventLoop(backend=Counting())
    try:
        assert loop.run_until_complete(asyncio.sleep(0.001, "slept")) == "slept"
        assert Counting.calls > 0
        before = len(Counting.interests)
        assert loop.run_until_complete(wait_readable()) == b"ping"
        # The wake-up pipe's watch at construction, then the sock_recv's
        # watch (watch_edges: a sock_* wait) and its removal, each through
        # the override.
        assert before >= 1
        watched = Counting.interests[before:]
        assert [events for _, events in watched] == [READABLE | 0x100, 0]
        assert watched[0][0] == watched[1][0]
    finally:
        loop.close()
