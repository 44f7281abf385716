"""CPU-bound work off the event loop: a ProcessPoolExecutor, driven with run_in_executor.

A thread cannot speed up pure-Python computation (the GIL lets one run at a time), so
the program counts primes in worker processes instead: `loop.run_in_executor(pool, ...)`
returns a future for each range, and `asyncio.gather` waits for all of them while a
coroutine on the loop keeps ticking.
"""

import asyncio
import os
from concurrent.futures import ProcessPoolExecutor

WORKERS = 2
CHUNKS = [(0, 60_000), (60_000, 120_000), (120_000, 180_000), (180_000, 240_000)]
TICK = 0.01  # seconds between ticks of the concurrent coroutine


def count_primes(start: int, stop: int) -> tuple[int, int]:
    """The number of primes in [start, stop), by trial division (slow on purpose), and our pid."""
    count = 0
    for n in range(max(start, 2), stop):
        if all(n % d for d in range(2, int(n**0.5) + 1)):
            count += 1
    return count, os.getpid()


async def ticker(stop: asyncio.Event) -> int:
    ticks = 0
    while not stop.is_set():
        await asyncio.sleep(TICK)
        ticks += 1
    return ticks


async def main() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    ticking = asyncio.create_task(ticker(stop))
    with ProcessPoolExecutor(max_workers=WORKERS) as pool:
        futures = [loop.run_in_executor(pool, count_primes, *chunk) for chunk in CHUNKS]
        results = await asyncio.gather(*futures)
    stop.set()
    ticks = await ticking
    for (start, stop_at), (count, _pid) in zip(CHUNKS, results, strict=True):
        print(f"primes in [{start}, {stop_at}): {count}")
    print(f"primes below {CHUNKS[-1][1]}: {sum(count for count, _ in results)}")
    pids = {pid for _, pid in results}
    print(f"ran in worker processes, not this one: {os.getpid() not in pids}")
    print(f"the loop kept ticking meanwhile: {ticks >= 5}")


if __name__ == "__main__":
    asyncio.run(main())
