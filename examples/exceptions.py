"""Exceptions in asyncio: caught where awaited, or reported by the loop.

1. An exception raised inside an awaited coroutine propagates through `await`, so an
   ordinary try/except around the await catches it.
2. Exceptions nobody can catch - one raised by a plain callback, or one stored in a
   task that is never awaited - go to the loop's exception handler. Here a custom
   handler, installed with `loop.set_exception_handler`, reports them.
"""

import asyncio
import gc
import re
from typing import Any


async def parse_number(text: str) -> int:
    await asyncio.sleep(0)
    return int(text)  # raises ValueError on bad input


def failing_callback() -> None:
    raise RuntimeError("callback failed")


async def failing_job() -> None:
    await asyncio.sleep(0)
    raise KeyError("missing")


def report(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """A custom loop exception handler: print one line per report."""
    # Drop the source location asyncio appends in messages ("... at file.py:12").
    message = re.sub(r" at \S+:\d+$", "", context["message"])
    exception = context.get("exception")
    print(f"handler: {message} -> {exception!r}")


async def main() -> None:
    # 1. Caught where it is awaited.
    try:
        await parse_number("forty-two")
    except ValueError as exc:
        print(f"caught ValueError: {exc}")
    print(f"parsed: {await parse_number('42')}")

    loop = asyncio.get_running_loop()
    loop.set_exception_handler(report)

    # 2a. A callback that raises: the loop catches it and calls the handler.
    loop.call_soon(failing_callback)
    await asyncio.sleep(0)

    # 2b. A task whose exception is never retrieved: reported when the task is destroyed.
    task = asyncio.create_task(failing_job())
    while not task.done():
        await asyncio.sleep(0)
    del task
    gc.collect()

    loop.set_exception_handler(None)
    print("main finished normally")


if __name__ == "__main__":
    asyncio.run(main())
