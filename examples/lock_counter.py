"""A shared counter, with and without asyncio.Lock.

Each increment reads the counter, yields to the event loop (`await asyncio.sleep(0)`,
standing in for any real await), then writes the value back. Without a lock, every
task reads the same value before any of them writes, and updates are lost; with the
lock, the read-yield-write section runs for one task at a time.
"""

import asyncio

TASKS = 100
INCREMENTS = 10


class Counter:
    def __init__(self) -> None:
        self.value = 0


async def increment_unsafely(counter: Counter) -> None:
    for _ in range(INCREMENTS):
        value = counter.value
        await asyncio.sleep(0)
        counter.value = value + 1


async def increment_locked(counter: Counter, lock: asyncio.Lock) -> None:
    for _ in range(INCREMENTS):
        async with lock:
            value = counter.value
            await asyncio.sleep(0)
            counter.value = value + 1


async def main() -> None:
    expected = TASKS * INCREMENTS

    racy = Counter()
    await asyncio.gather(*(increment_unsafely(racy) for _ in range(TASKS)))
    print(f"without a lock: {racy.value} of {expected} ({expected - racy.value} updates lost)")

    safe = Counter()
    lock = asyncio.Lock()
    await asyncio.gather(*(increment_locked(safe, lock) for _ in range(TASKS)))
    print(f"with a lock: {safe.value} of {expected}")
    print(f"correct: {safe.value == expected}")


if __name__ == "__main__":
    asyncio.run(main())
