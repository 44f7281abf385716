"""Where real and virtual time meet: sockets, threads and processes on a virtual loop.

The rules under test (docs/testing.md, "Real I/O on virtual time"): real I/O
is seen whenever the loop polls, and an idle loop waits
``autojump_threshold`` real seconds for it before jumping; the clock never
jumps while an executor job runs; a wake-up from another thread arrives at
the current virtual time.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
import warnings

from slipstream.testing import VirtualEventLoop

from .conftest import RunVirtual


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while line := await reader.readline():
        writer.write(line)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


def test_a_loopback_echo_between_virtual_sleeps(run_virtual: RunVirtual) -> None:
    async def main() -> list[tuple[bytes, float]]:
        loop = asyncio.get_running_loop()
        server = await asyncio.start_server(_echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        replies: list[tuple[bytes, float]] = []
        for index in range(5):
            await asyncio.sleep(60)  # a minute of virtual time between messages
            writer.write(b"message %d\n" % index)
            replies.append((await reader.readline(), loop.time()))
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return replies

    assert run_virtual(main()) == [(b"message %d\n" % i, 60.0 * (i + 1)) for i in range(5)]


def test_real_replies_from_a_thread_beat_a_virtual_timeout_within_the_threshold(
    run_virtual: RunVirtual,
) -> None:
    # The server is a plain blocking socket in a thread: its replies come in
    # real time, a few milliseconds late, while the client waits under a
    # virtual timeout.  autojump_threshold gives them that long to arrive.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_one() -> None:
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as lines:
            for line in lines:
                time.sleep(0.02)
                conn.sendall(line.upper())

    server = threading.Thread(target=serve_one)
    server.start()

    async def main() -> tuple[list[bytes], float]:
        loop = asyncio.get_running_loop()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        replies = []
        async with asyncio.timeout(5):
            for word in (b"one\n", b"two\n", b"three\n"):
                writer.write(word)
                replies.append(await reader.readline())
        writer.close()
        await writer.wait_closed()
        return replies, loop.time()

    try:
        replies, finished = run_virtual(main(), autojump_threshold=2.0)
    finally:
        server.join(timeout=10)
        listener.close()
    assert replies == [b"ONE\n", b"TWO\n", b"THREE\n"]
    # Every wait ended with real I/O, so the virtual clock never moved.
    assert finished == 0.0


def test_an_idle_loop_waits_the_threshold_in_real_time_before_jumping(
    run_virtual: RunVirtual,
) -> None:
    async def main() -> float:
        await asyncio.sleep(1000)
        return asyncio.get_running_loop().time()

    started = time.perf_counter()
    assert run_virtual(main(), autojump_threshold=0.1) == 1000.0
    assert time.perf_counter() - started >= 0.1


def test_the_clock_does_not_jump_while_an_executor_job_runs(run_virtual: RunVirtual) -> None:
    async def main() -> list[tuple[str, float]]:
        loop = asyncio.get_running_loop()
        seen: list[tuple[str, float]] = []

        async def thread_job() -> None:
            # 0.2 s of real work under a 1-second virtual timeout: the
            # timeout cannot expire by a jump while the thread works.
            await asyncio.wait_for(asyncio.to_thread(time.sleep, 0.2), timeout=1.0)
            seen.append(("thread done", loop.time()))

        async def virtual_sleep() -> None:
            await asyncio.sleep(5)
            seen.append(("slept", loop.time()))

        await asyncio.gather(thread_job(), virtual_sleep())
        return seen

    assert run_virtual(main()) == [("thread done", 0.0), ("slept", 5.0)]


def test_busy_callbacks_still_see_real_io(run_virtual: RunVirtual) -> None:
    # The clock stands still while callbacks run; the loop must still peek
    # at I/O between them (the core measures its poll-skip window in real
    # time, not on the loop's clock).
    async def main() -> tuple[bytes, float]:
        loop = asyncio.get_running_loop()
        left, right = socket.socketpair()
        received: list[bytes] = []
        loop.add_reader(left, lambda: received.append(left.recv(100)))
        right.send(b"ping")
        turns = 0
        while not received and turns < 10_000:
            await asyncio.sleep(0)
            turns += 1
        loop.remove_reader(left)
        left.close()
        right.close()
        return b"".join(received), loop.time()

    assert run_virtual(main()) == (b"ping", 0.0)


def test_a_subprocess_runs_on_a_virtual_loop(run_virtual: RunVirtual) -> None:
    async def main() -> tuple[int | None, bytes, float]:
        await asyncio.sleep(30)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys; print(sys.stdin.read()[::-1])",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        output, _ = await process.communicate(b"virtual")
        return process.returncode, output, asyncio.get_running_loop().time()

    assert run_virtual(main()) == (0, b"lautriv\n", 30.0)


def test_call_soon_threadsafe_arrives_at_the_current_virtual_time(
    run_virtual: RunVirtual,
) -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(12)
        arrived = loop.create_future()
        thread = threading.Thread(
            target=loop.call_soon_threadsafe, args=(arrived.set_result, "hello")
        )
        thread.start()
        assert await arrived == "hello"
        thread.join()
        return loop.time()

    assert run_virtual(main()) == 12.0


def test_shutting_the_default_executor_down_waits_for_its_threads(
    run_virtual: RunVirtual,
) -> None:
    finished = threading.Event()

    def slow_job() -> None:
        time.sleep(0.2)
        finished.set()

    async def main() -> float:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualEventLoop)  # (its timeout is typed from 3.12 on)
        job = loop.run_in_executor(None, slow_job)
        job.cancel()  # nobody waits for the job; the executor still must
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "did not finish joining" would fail here
            await loop.shutdown_default_executor(timeout=1.0)
        return loop.time()

    assert run_virtual(main()) == 0.0
    assert finished.is_set()
