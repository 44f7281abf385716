"""Tasks and gather: several coroutines run concurrently.

`create_task` schedules a coroutine to run as soon as `main` yields; `gather` waits
for all of them and returns their results in the order the awaitables were given,
whatever order they finished in.
"""

import asyncio
import time

# name -> seconds to "work"; given out of order on purpose
JOBS = {"slow": 0.3, "fast": 0.1, "medium": 0.2}


async def work(name: str, seconds: float) -> str:
    print(f"{name}: started")
    await asyncio.sleep(seconds)
    print(f"{name}: finished after {seconds:.1f} s")
    return f"{name} result"


async def main() -> None:
    started = time.monotonic()
    tasks = [asyncio.create_task(work(name, seconds)) for name, seconds in JOBS.items()]
    print(f"created {len(tasks)} tasks")
    results = await asyncio.gather(*tasks)
    elapsed = time.monotonic() - started
    print(f"gathered: {results}")
    # Concurrent, not sequential: the total is about the longest job, not the sum (0.6 s).
    print(f"ran concurrently: {elapsed < sum(JOBS.values())}")


if __name__ == "__main__":
    asyncio.run(main())
