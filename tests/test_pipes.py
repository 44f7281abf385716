"""Pipe and pty transports: ``connect_read_pipe`` / ``connect_write_pipe`` as on asyncio."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import random
import sys
import tempfile
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

import slipstream

Run = Callable[[Coroutine[Any, Any, Any]], Any]


class Recorder(asyncio.Protocol):
    """Records the protocol calls it gets, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.data = bytearray()
        self.transport: Any = None
        self.exc: BaseException | None = None
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        if not self.events or self.events[-1] != "data":
            self.events.append("data")
        self.data += data

    def eof_received(self) -> None:
        self.events.append("eof")

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")

    def connection_lost(self, exc: BaseException | None) -> None:
        self.events.append("lost")
        self.exc = exc
        self.lost.set_result(None)


def _reading(fd: int) -> Any:
    """A file object for ``fd``; the pipe transport given it will close it."""
    return open(fd, "rb", buffering=0)


def _writing(fd: int) -> Any:
    """A file object for ``fd``; the pipe transport given it will close it."""
    return open(fd, "wb", buffering=0)


async def _wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.001)


def test_read_pipe_events(run: Run) -> None:
    async def main() -> tuple[list[str], bytes, bool]:
        loop = asyncio.get_running_loop()
        rfd, wfd = os.pipe()
        pipe = _reading(rfd)
        transport, proto = await loop.connect_read_pipe(Recorder, pipe)
        assert proto.events == ["made"]
        assert transport.get_extra_info("pipe") is pipe
        assert transport.is_reading()
        os.write(wfd, b"abc")
        await _wait_for(lambda: len(proto.data) == 3)
        os.close(wfd)
        await proto.lost
        return proto.events, bytes(proto.data), pipe.closed

    assert run(main()) == (["made", "data", "eof", "lost"], b"abc", True)


def test_pause_and_resume_reading(run: Run) -> None:
    async def main() -> list[object]:
        loop = asyncio.get_running_loop()
        rfd, wfd = os.pipe()
        transport, proto = await loop.connect_read_pipe(Recorder, _reading(rfd))
        seen: list[object] = []
        transport.pause_reading()
        transport.pause_reading()  # idempotent
        seen.append(transport.is_reading())
        os.write(wfd, b"x")
        await asyncio.sleep(0.05)
        seen.append(len(proto.data))
        transport.resume_reading()
        seen.append(transport.is_reading())
        await _wait_for(lambda: len(proto.data) == 1)
        seen.append(len(proto.data))
        transport.close()
        seen.append(transport.is_reading())
        await proto.lost
        os.close(wfd)
        seen.append(proto.events)
        return seen

    assert run(main()) == [False, 0, True, 1, False, ["made", "data", "lost"]]


def test_write_pipe_and_write_eof(run: Run) -> None:
    async def main() -> tuple[bytes, list[str], bool]:
        loop = asyncio.get_running_loop()
        rfd, wfd = os.pipe()
        transport, proto = await loop.connect_write_pipe(Recorder, _writing(wfd))
        assert transport.can_write_eof()
        transport.write(b"hello ")
        transport.write(bytearray(b"pipe "))
        transport.write(memoryview(b"world"))
        transport.writelines([b"!", b"!"])
        transport.write_eof()
        assert transport.is_closing()
        await proto.lost
        chunks = []
        while chunk := os.read(rfd, 1024):
            chunks.append(chunk)
        os.close(rfd)
        return b"".join(chunks), proto.events, proto.exc is None

    assert run(main()) == (b"hello pipe world!!", ["made", "lost"], True)


def test_write_flow_control_and_drain(run: Run) -> None:
    """A reader that does not read: the buffer grows, the protocol pauses, then resumes."""

    async def main() -> tuple[list[str], bytes]:
        loop = asyncio.get_running_loop()
        rfd, wfd = os.pipe()
        transport, proto = await loop.connect_write_pipe(Recorder, _writing(wfd))
        transport.set_write_buffer_limits(high=1024)
        assert transport.get_write_buffer_limits() == (256, 1024)
        payload = random.Random(1).randbytes(1024 * 1024)
        transport.write(payload)
        assert transport.get_write_buffer_size() > 0
        assert proto.events == ["made", "pause"]
        received = bytearray()
        os.set_blocking(rfd, False)
        while len(received) < len(payload):
            await asyncio.sleep(0)
            try:
                received += os.read(rfd, 65536)
            except BlockingIOError:
                pass
        await _wait_for(lambda: transport.get_write_buffer_size() == 0)
        transport.close()
        await proto.lost
        os.close(rfd)
        return proto.events, bytes(received)

    events, received = run(main())
    assert events == ["made", "pause", "resume", "lost"]
    assert (
        hashlib.sha256(received).digest()
        == hashlib.sha256(random.Random(1).randbytes(1024 * 1024)).digest()
    )


def test_write_pipe_notices_reader_closing(run: Run) -> None:
    async def main() -> tuple[list[str], BaseException | None]:
        loop = asyncio.get_running_loop()
        rfd, wfd = os.pipe()
        _transport, proto = await loop.connect_write_pipe(Recorder, _writing(wfd))
        os.close(rfd)  # nothing written: the transport must still notice
        await asyncio.wait_for(proto.lost, 5)
        return proto.events, proto.exc

    assert run(main()) == (["made", "lost"], None)


def test_write_pipe_reader_closes_with_data_buffered(run: Run) -> None:
    async def main() -> tuple[list[str], type[BaseException] | None, int]:
        loop = asyncio.get_running_loop()
        rfd, wfd = os.pipe()
        transport, proto = await loop.connect_write_pipe(Recorder, _writing(wfd))
        transport.write(b"x" * (1024 * 1024))
        os.close(rfd)
        await asyncio.wait_for(proto.lost, 5)
        transport.write(b"more")  # ignored (and counted) once the pipe is gone
        exc_type = type(proto.exc) if proto.exc else None
        return proto.events, exc_type, transport.get_write_buffer_size()

    assert run(main()) == (["made", "pause", "lost"], BrokenPipeError, 0)


def test_abort_drops_the_buffer(run: Run) -> None:
    async def main() -> tuple[list[str], int]:
        loop = asyncio.get_running_loop()
        rfd, wfd = os.pipe()
        transport, proto = await loop.connect_write_pipe(Recorder, _writing(wfd))
        transport.write(b"y" * (1024 * 1024))
        transport.close()  # would flush first
        transport.abort()  # ... but not any more
        await proto.lost
        os.close(rfd)
        return proto.events, transport.get_write_buffer_size()

    assert run(main()) == (["made", "pause", "lost"], 0)


def test_write_type_error(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        rfd, wfd = os.pipe()
        transport, proto = await loop.connect_write_pipe(Recorder, _writing(wfd))
        with pytest.raises((TypeError, AssertionError)):
            transport.write("text")  # type: ignore[arg-type]
        transport.close()
        await proto.lost
        os.close(rfd)

    run(main())


def test_regular_files_are_refused(run: Run) -> None:
    async def main() -> list[tuple[type[BaseException], str]]:
        loop = asyncio.get_running_loop()
        errors: list[tuple[type[BaseException], str]] = []
        with tempfile.TemporaryFile() as f:
            for connect in (loop.connect_read_pipe, loop.connect_write_pipe):
                with pytest.raises(ValueError) as info:
                    await connect(asyncio.Protocol, f)
                errors.append((type(info.value), str(info.value)))
            assert not f.closed
        return errors

    assert run(main()) == [
        (ValueError, "Pipe transport is for pipes/sockets only."),
        (ValueError, "Pipe transport is only for pipes, sockets and character devices"),
    ]


def test_socket_as_a_pipe(run: Run) -> None:
    async def main() -> tuple[bytes, list[str]]:
        import socket

        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        _rt, rproto = await loop.connect_read_pipe(Recorder, a)
        wt, wproto = await loop.connect_write_pipe(Recorder, b)
        wt.write(b"over a socket")
        wt.close()
        await wproto.lost
        await rproto.lost
        return bytes(rproto.data), rproto.events

    assert run(main()) == (b"over a socket", ["made", "data", "eof", "lost"])


def test_pty_read_until_slave_closes(run: Run) -> None:
    """A pty master reads EIO once the slave is closed: connection_lost(EIO), no log."""

    async def main() -> tuple[bytes, list[str], int | None]:
        loop = asyncio.get_running_loop()
        errors: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda loop, context: errors.append(context))
        master, slave = os.openpty()
        _transport, proto = await loop.connect_read_pipe(Recorder, _reading(master))
        os.write(slave, b"from the pty")
        await _wait_for(lambda: len(proto.data) >= 12)
        os.close(slave)
        await asyncio.wait_for(proto.lost, 5)
        assert not errors
        exc = proto.exc
        return bytes(proto.data), proto.events, exc.errno if isinstance(exc, OSError) else None

    assert run(main()) == (b"from the pty", ["made", "data", "lost"], errno.EIO)


def test_pty_write_and_bidirectional(run: Run) -> None:
    async def main() -> tuple[bytes, bytes]:
        loop = asyncio.get_running_loop()
        master, slave = os.openpty()
        import tty

        tty.setraw(slave)
        # Two objects for one descriptor: each transport closes its own.
        master_read = _reading(master)
        master_write = _writing(os.dup(master))
        rt, rproto = await loop.connect_read_pipe(Recorder, master_read)
        wt, wproto = await loop.connect_write_pipe(Recorder, master_write)
        wt.write(b"to the slave")
        received = b""
        os.set_blocking(slave, False)
        while len(received) < 12:
            await asyncio.sleep(0.001)
            try:
                received += os.read(slave, 100)
            except BlockingIOError:
                pass
        os.write(slave, b"back")
        await _wait_for(lambda: len(rproto.data) >= 4)
        wt.close()
        rt.close()
        await wproto.lost
        await rproto.lost
        os.close(slave)
        return received, bytes(rproto.data)

    assert run(main()) == (b"to the slave", b"back")


def test_transport_owns_its_descriptor() -> None:
    """slipstream refuses add_reader on a descriptor a live pipe transport drives."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        rfd, wfd = os.pipe()
        transport, proto = await loop.connect_read_pipe(Recorder, _reading(rfd))
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.add_reader(rfd, print)
        transport.close()
        await proto.lost
        os.close(wfd)

    slipstream.run(main())


def test_repr_and_protocol_swap(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        rfd, wfd = os.pipe()
        rt, _rproto = await loop.connect_read_pipe(Recorder, _reading(rfd))
        wt, wproto = await loop.connect_write_pipe(Recorder, _writing(wfd))
        assert f"fd={rfd}" in repr(rt)
        assert f"fd={wfd}" in repr(wt)
        other = Recorder()
        rt.set_protocol(other)
        assert rt.get_protocol() is other
        wt.write(b"z")
        await _wait_for(lambda: bool(other.data))
        wt.close()
        await wproto.lost
        await other.lost
        assert "closed" in repr(rt)

    run(main())


# -- a pipeline of three processes ------------------------------------------------------

PIPELINE_BYTES = 50 * 1024 * 1024
_CAT = [
    sys.executable,
    "-c",
    "import shutil, sys; shutil.copyfileobj(sys.stdin.buffer, sys.stdout.buffer, 1 << 16)",
]


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while chunk := await reader.read(1 << 16):
        writer.write(chunk)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


def test_three_process_pipeline_loses_no_byte(run: Run) -> None:
    """50 MiB through three children, relayed by the loop between each: same sha256."""
    payload = random.Random(7).randbytes(PIPELINE_BYTES)

    async def main() -> tuple[int, bytes, list[int]]:
        procs = [await asyncio.create_subprocess_exec(*_CAT, stdin=-1, stdout=-1) for _ in range(3)]

        async def feed() -> None:
            stdin = procs[0].stdin
            assert stdin is not None
            view = memoryview(payload)
            for start in range(0, len(view), 1 << 20):
                stdin.write(view[start : start + (1 << 20)])
                await stdin.drain()
            stdin.close()
            await stdin.wait_closed()

        async def consume() -> tuple[int, bytes]:
            digest = hashlib.sha256()
            total = 0
            stdout = procs[2].stdout
            assert stdout is not None
            while chunk := await stdout.read(1 << 16):
                digest.update(chunk)
                total += len(chunk)
            return total, digest.digest()

        relays = [
            _relay(procs[i].stdout, procs[i + 1].stdin)  # type: ignore[arg-type]
            for i in range(2)
        ]
        consumer = asyncio.ensure_future(consume())
        await asyncio.wait_for(asyncio.gather(feed(), *relays, consumer), 120)
        total, digest = consumer.result()
        codes = [await p.wait() for p in procs]
        return total, digest, codes

    total, digest, codes = run(main())
    assert total == PIPELINE_BYTES
    assert digest == hashlib.sha256(payload).digest()
    assert codes == [0, 0, 0]
