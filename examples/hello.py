"""Hello, World: one coroutine awaited twice, one after the other.

`await` suspends `main` until `say_hello` finishes, so the two greetings run in
sequence and the whole program takes about two sleeps.
"""

import asyncio
import time

DELAY = 0.1  # seconds (the classic example sleeps 1 s; shortened to keep tests fast)


async def say_hello() -> None:
    print("Hello")
    await asyncio.sleep(DELAY)
    print("World")


async def main() -> None:
    started = time.monotonic()
    await say_hello()
    await say_hello()
    elapsed = time.monotonic() - started
    # The sleeps ran one after the other, so the total is at least their sum.
    print(f"ran in sequence: {elapsed >= 2 * DELAY * 0.95}")


if __name__ == "__main__":
    asyncio.run(main())
