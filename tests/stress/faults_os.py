"""Process-level faults: a signal storm, many children exiting at once, a loop closed with
work pending, and callbacks pushed from many threads."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import threading
import warnings

from .common import Figures, LoopFactory, Scale, open_fds, raise_fd_limit

# asyncio wakes its loop through a socketpair that holds about 280 signal numbers;
# bursts smaller than that keep its "wakeup fd" overflow messages out of the log.
BURST = 200
THREADS = 8


async def signal_storm(signals: int) -> Figures:
    """Send ``signals`` SIGUSR1s in bursts; the handler runs, the loop survives, and a
    marker signal sent after the storm is always delivered."""
    loop = asyncio.get_running_loop()
    handled = 0
    marker: asyncio.Future[None] = loop.create_future()

    def on_usr1() -> None:
        nonlocal handled
        handled += 1

    loop.add_signal_handler(signal.SIGUSR1, on_usr1)

    def on_usr2() -> None:
        if not marker.done():
            marker.set_result(None)

    loop.add_signal_handler(signal.SIGUSR2, on_usr2)
    try:
        for start in range(0, signals, BURST):
            for _ in range(min(BURST, signals - start)):
                os.kill(os.getpid(), signal.SIGUSR1)
            await asyncio.sleep(0)
        os.kill(os.getpid(), signal.SIGUSR2)
        await asyncio.wait_for(marker, 10)
        await asyncio.sleep(0.05)
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
        loop.remove_signal_handler(signal.SIGUSR2)
    bursts = -(-signals // BURST)
    if not bursts <= handled <= signals:
        raise AssertionError(f"{handled} handler calls for {signals} signals in {bursts} bursts")
    return {"sent": signals, "handled": handled}


async def children_exit_at_once(children: int) -> Figures:
    """Start ``children`` shells that all block on one pipe, close it: they all exit together.

    Each ``wait()`` must return its own child's code, and afterwards no child is left,
    zombie or alive (``waitpid(-1)`` has nothing to wait for).
    """
    raise_fd_limit(4 * children + 256)
    gate_read, gate_write = os.pipe()
    processes = []
    try:
        for index in range(children):
            processes.append(
                await asyncio.create_subprocess_exec(
                    "/bin/sh",
                    "-c",
                    f"read _; exit {index % 256}",
                    stdin=gate_read,  # every child reads the same pipe
                    stdout=asyncio.subprocess.DEVNULL,
                )
            )
    finally:
        os.close(gate_read)
        os.close(gate_write)  # every child's read returns at end of file now
    codes = await asyncio.wait_for(asyncio.gather(*(p.wait() for p in processes)), 60)
    wrong = [(i, code) for i, code in enumerate(codes) if code != i % 256]
    if wrong:
        raise AssertionError(f"wait() returned the wrong code for {len(wrong)}: {wrong[:5]}")
    await asyncio.sleep(0.05)
    try:
        leftover = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        leftover = None
    if leftover is not None:
        raise AssertionError(f"a child was left unreaped: {leftover}")
    return {"children": children, "all_codes_right": True, "zombies": 0}


def close_with_pending_work(loop_factory: LoopFactory) -> Figures:
    """Close a loop that still has a server, a connection and a pending task.

    Nothing may raise; as on asyncio, the leftovers are reported when collected
    (ResourceWarnings for the transports, "Task was destroyed but it is pending!").
    """
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logging.getLogger("asyncio").addHandler(handler)
    fds_before = open_fds()
    pending: list[asyncio.Task[None]] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loop = loop_factory()

            async def leave_things_open() -> None:
                loop = asyncio.get_running_loop()
                server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
                port = server.sockets[0].getsockname()[1]
                await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
                pending.append(loop.create_task(asyncio.sleep(3600)))
                await asyncio.sleep(0.01)

            loop.run_until_complete(leave_things_open())
            loop.close()
            del loop
            pending.clear()  # the last reference: the task is destroyed while pending
            for _ in range(3):
                gc.collect()
    finally:
        logging.getLogger("asyncio").removeHandler(handler)
    resource_warnings = [w for w in caught if issubclass(w.category, ResourceWarning)]
    pending_reports = [r for r in records if "pending" in r.getMessage()]
    if not resource_warnings:
        raise AssertionError("no ResourceWarning for the transports left open")
    if not pending_reports:
        raise AssertionError("no report of the task destroyed while pending")
    return {
        "resource_warnings": len(resource_warnings),
        "pending_task_reports": len(pending_reports),
        "fds_before": fds_before,
        "fds_after_collect": open_fds(),
    }


async def threadsafe_flood(callbacks: int) -> Figures:
    """``THREADS`` threads push ``callbacks`` in all with call_soon_threadsafe; none is lost.

    Then a ping-pong: one thread sends a callback only once the last one ran, with the
    loop otherwise idle, so each callback needs its own wake-up of a sleeping loop.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    ran = [0] * THREADS
    per_thread = callbacks // THREADS

    def count(thread: int) -> None:
        ran[thread] += 1
        if sum(ran) == per_thread * THREADS and not done.done():
            done.set_result(None)

    def push(thread: int) -> None:
        for _ in range(per_thread):
            loop.call_soon_threadsafe(count, thread)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    await asyncio.wait_for(done, 120)
    for thread in threads:
        thread.join()
    if ran != [per_thread] * THREADS:
        raise AssertionError(f"callbacks run per thread: {ran}, {per_thread} each were sent")

    pings = 1_000
    answered = threading.Event()
    lost = []

    def ping_pong() -> None:
        for index in range(pings):
            answered.clear()
            loop.call_soon_threadsafe(answered.set)
            if not answered.wait(5):
                lost.append(index)
                return

    finished: asyncio.Future[None] = loop.create_future()

    def ping_pong_then_finish() -> None:
        ping_pong()
        loop.call_soon_threadsafe(finished.set_result, None)

    pinger = threading.Thread(target=ping_pong_then_finish)
    pinger.start()
    # No timer is due before this one: the loop sleeps, and only a wake-up runs a ping.
    await asyncio.wait_for(finished, 120)
    pinger.join()
    if lost:
        raise AssertionError(f"ping {lost[0]} never ran: the loop was not woken")
    return {"threads": THREADS, "callbacks": per_thread * THREADS, "ping_pong_wakeups": pings}


async def os_faults(scale: Scale) -> Figures:
    """The signal storm, the children, and the thread flood, on the running loop."""
    figures: Figures = {
        "signal_storm": await signal_storm(scale.signals),
        "children": await children_exit_at_once(scale.children),
        "call_soon_threadsafe": await threadsafe_flood(scale.threadsafe_callbacks),
    }
    return figures
