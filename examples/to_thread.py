"""Blocking code off the event loop with asyncio.to_thread.

`time.sleep` would freeze the event loop; `asyncio.to_thread` runs it in a worker
thread instead, so another coroutine keeps ticking while the function blocks.
"""

import asyncio
import threading
import time

BLOCK_FOR = 0.3  # seconds the blocking function sleeps
TICK = 0.02  # seconds between ticks of the concurrent coroutine


def blocking_work(seconds: float) -> tuple[str, int]:
    time.sleep(seconds)  # a blocking call: no await possible here
    return "blocking work done", threading.get_ident()


async def ticker(stop: asyncio.Event) -> int:
    ticks = 0
    while not stop.is_set():
        await asyncio.sleep(TICK)
        ticks += 1
    return ticks


async def main() -> None:
    stop = asyncio.Event()
    ticking = asyncio.create_task(ticker(stop))
    result, worker_thread = await asyncio.to_thread(blocking_work, BLOCK_FOR)
    stop.set()
    ticks = await ticking
    print(result)
    print(f"ran in another thread: {worker_thread != threading.get_ident()}")
    # About BLOCK_FOR / TICK = 15 ticks happen while the worker blocks; a few prove overlap.
    print(f"the loop kept ticking meanwhile: {ticks >= 5}")


if __name__ == "__main__":
    asyncio.run(main())
