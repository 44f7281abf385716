"""redis-py's asyncio client against a real redis-server, over TCP (and a Unix socket).

redis-py talks to the loop through asyncio streams (``open_connection`` /
``open_unix_connection``), keeps a pool of connections, and reads replies
with timeouts; pub/sub and blocking pops leave a read outstanding for a long
time while other connections carry on.  Every key lives under a prefix of its
own and is deleted at the end, since the server outlives a test run.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import ConnectionError as RedisConnectionError

Run = Callable[[Coroutine[Any, Any, Any]], Any]
KEYS = 10_000


@asynccontextmanager
async def client(url: str) -> AsyncIterator[tuple[Redis, str]]:
    """A client and a fresh key prefix; the prefix's keys are deleted afterwards."""
    redis = Redis.from_url(url, decode_responses=True, socket_timeout=10)
    prefix = f"slipstream-test:{uuid.uuid4().hex}:"
    try:
        yield redis, prefix
    finally:
        keys = [key async for key in redis.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await redis.unlink(*keys)
        await redis.aclose()


def value_of(i: int) -> str:
    return f"value {i} " + "v" * (i % 100)


def test_pipeline_of_10000_keys(run: Run, redis_url: str) -> None:
    async def main() -> None:
        async with client(redis_url) as (redis, prefix):
            async with redis.pipeline(transaction=False) as pipe:
                for i in range(KEYS):
                    pipe.set(f"{prefix}{i}", value_of(i))
                assert await pipe.execute() == [True] * KEYS
            async with redis.pipeline(transaction=False) as pipe:
                for i in range(KEYS):
                    pipe.get(f"{prefix}{i}")
                assert await pipe.execute() == [value_of(i) for i in range(KEYS)]
            keys = [f"{prefix}{i}" for i in range(0, KEYS, 7)]
            assert await redis.mget(keys) == [value_of(i) for i in range(0, KEYS, 7)]
            found = {key async for key in redis.scan_iter(match=prefix + "*", count=1000)}
            assert found == {f"{prefix}{i}" for i in range(KEYS)}
            # MULTI/EXEC: the increments run as one transaction.
            async with redis.pipeline(transaction=True) as pipe:
                for _ in range(100):
                    pipe.incr(prefix + "counter")
                assert await pipe.execute() == list(range(1, 101))

    run(main())


def test_200_concurrent_commands_through_a_pool_of_10(run: Run, redis_url: str) -> None:
    async def main() -> None:
        async with client(redis_url) as (redis, prefix):
            name = prefix.rstrip(":")  # names the pool's connections, to count them
            pool = BlockingConnectionPool.from_url(
                redis_url, max_connections=10, decode_responses=True, client_name=name
            )
            limited = Redis(connection_pool=pool)
            try:
                results = await asyncio.gather(*(limited.incr(prefix + "hits") for _ in range(200)))
                assert sorted(results) == list(range(1, 201))
                assert await redis.get(prefix + "hits") == "200"
                connections = [c for c in await redis.client_list() if c["name"] == name]
                assert 2 <= len(connections) <= 10
            finally:
                await limited.aclose()
                await pool.disconnect()

    run(main())


def test_pubsub(run: Run, redis_url: str) -> None:
    async def main() -> None:
        async with client(redis_url) as (redis, prefix), client(redis_url) as (publisher, _):
            channel = prefix + "news"
            async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(channel)
                await pubsub.psubscribe(prefix + "n*")
                for i in range(300):
                    # Two subscriptions match: the channel itself and the pattern.
                    assert await publisher.publish(channel, f"item {i}") == 2
                received: list[tuple[str, str]] = []
                deadline = time.monotonic() + 10
                while len(received) < 600 and time.monotonic() < deadline:
                    # None: nothing within the timeout, or a subscribe confirmation (ignored).
                    message = await pubsub.get_message(timeout=1)
                    if message is not None:
                        received.append((message["type"], message["data"]))
                kinds = ("message", "pmessage")
                assert received == [(kind, f"item {i}") for i in range(300) for kind in kinds]

                await pubsub.unsubscribe(channel)
                await pubsub.punsubscribe()
                for _ in range(100):  # the unsubscriptions reach the server in their own time
                    if await publisher.publish(channel, "nobody listens") == 0:
                        break
                    await asyncio.sleep(0.01)
                assert await publisher.publish(channel, "nobody listens") == 0

    run(main())


async def pop(redis: Redis, keys: list[str], timeout: float) -> tuple[str, str] | None:
    """BLPOP, typed: the list it came from and the value, or None on timeout."""
    popped = await redis.blpop(keys, timeout=timeout)
    return None if popped is None else (str(popped[0]), str(popped[1]))


def test_blocking_pop(run: Run, redis_url: str) -> None:
    async def main() -> None:
        async with client(redis_url) as (redis, prefix), client(redis_url) as (pusher, _):
            queue = prefix + "queue"
            started = time.monotonic()
            assert await pop(redis, [queue], timeout=0.1) is None
            assert time.monotonic() - started >= 0.08

            # A pop waiting on the server is answered by a push from another connection.
            waiting = asyncio.create_task(pop(redis, [prefix + "other", queue], timeout=5))
            await asyncio.sleep(0.05)
            assert not waiting.done()
            assert await pusher.rpush(queue, "job 1", "job 2") == 2
            assert await asyncio.wait_for(waiting, 5) == (queue, "job 1")
            assert await pop(redis, [queue], timeout=1) == (queue, "job 2")

            # Many waiters at once, each on its own pool connection.
            waiters = [asyncio.create_task(pop(redis, [queue], timeout=5)) for _ in range(10)]
            await asyncio.sleep(0.05)
            await pusher.rpush(queue, *(f"job {i}" for i in range(10)))
            popped = await asyncio.wait_for(asyncio.gather(*waiters), 5)
            assert sorted(p[1] for p in popped if p) == sorted(f"job {i}" for i in range(10))

    run(main())


def test_reconnects_after_the_server_drops_the_connection(run: Run, redis_url: str) -> None:
    async def main() -> None:
        async with client(redis_url) as (redis, prefix), client(redis_url) as (admin, _):
            await redis.set(prefix + "key", "kept")
            first = await redis.client_id()
            assert await admin.client_kill_filter(_id=str(first)) == 1
            # The server has closed the pooled connection.  redis-py notices the EOF either
            # when it takes the connection from the pool (it connects again at once) or when
            # it reads the reply (the command fails, the next one connects again): which one
            # depends on redis-py's code for the socket type, and is the same on every loop.
            try:
                value = await redis.get(prefix + "key")
            except RedisConnectionError:
                value = await redis.get(prefix + "key")
            assert value == "kept"
            assert await redis.client_id() != first

    run(main())


def test_over_a_unix_socket(run: Run, redis_unix_url: str) -> None:
    async def main() -> None:
        async with client(redis_unix_url) as (redis, prefix):
            async with redis.pipeline(transaction=False) as pipe:
                for i in range(1000):
                    pipe.set(f"{prefix}{i}", value_of(i))
                    pipe.get(f"{prefix}{i}")
                replies = await pipe.execute()
            assert replies == [r for i in range(1000) for r in (True, value_of(i))]
            queue = prefix + "queue"
            waiting = asyncio.create_task(pop(redis, [queue], timeout=5))
            await asyncio.sleep(0.02)
            await redis.rpush(queue, "over unix")
            assert await asyncio.wait_for(waiting, 5) == (queue, "over unix")

    run(main())
