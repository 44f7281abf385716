"""A retry-with-backoff helper of the kind real clients carry, to test on virtual time.

Exponential backoff with full jitter, capped per delay and by an overall
deadline; the randomness comes from the caller's ``random.Random`` so that a
seeded run is reproducible.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class RetriesExhausted(Exception):
    """Every attempt failed; ``__cause__`` is the last failure."""


async def retry_with_backoff(
    operation: Callable[[], Awaitable[T]],
    *,
    retries: int,
    base_delay: float,
    max_delay: float,
    deadline: float,
    rng: random.Random,
    retry_on: tuple[type[BaseException], ...] = (ConnectionError,),
) -> T:
    """Call ``operation`` until it succeeds, at most ``retries`` times more after the first try.

    Before retry ``n`` (from 0) it sleeps a random time in
    ``[delay / 2, delay]`` where ``delay = min(max_delay, base_delay * 2**n)``;
    the whole affair is cut short by ``asyncio.timeout(deadline)``.
    """
    async with asyncio.timeout(deadline):
        for attempt in range(retries + 1):
            try:
                return await operation()
            except retry_on as exc:
                if attempt == retries:
                    raise RetriesExhausted(f"{retries + 1} attempts failed") from exc
                delay = min(max_delay, base_delay * 2**attempt)
                await asyncio.sleep(rng.uniform(delay / 2, delay))
    raise AssertionError("unreachable: the loop returns or raises")
