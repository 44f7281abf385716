"""asyncpg against a real PostgreSQL 15, with and without TLS.

asyncpg is the library that shows whether a loop implements the whole
transport API: it opens every connection with an SSLRequest on a throw-away
protocol and then hands the transport to its real protocol with
``transport.set_protocol`` (after ``loop.start_tls`` when the server says
yes), sets TCP_NODELAY on ``get_extra_info('socket')``, pauses reading while
a COPY's consumer is slow, and cancels a query by opening a second connection
for the CancelRequest.  Each test runs against the plain server (``prefer``
falls back to plain text) and the TLS one (verified against the CA that
``start_services`` made).
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest

Run = Callable[[Coroutine[Any, Any, Any]], Any]
ROWS = 10_000


@pytest.fixture(params=["plain", "tls"])
def connect_kwargs(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Keyword arguments for ``asyncpg.connect``/``create_pool``: plain server or TLS server."""
    if request.param == "plain":
        return {"dsn": request.getfixturevalue("pg_dsn")}
    dsn, ca = request.getfixturevalue("pg_tls")
    return {"dsn": dsn, "ssl": ssl.create_default_context(cafile=ca)}


async def connect(connect_kwargs: dict[str, Any]) -> Any:
    conn = await asyncpg.connect(**connect_kwargs, timeout=10)
    want_tls = "ssl" in connect_kwargs
    in_tls = await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    assert in_tls == want_tls
    return conn


def make_records() -> list[tuple[Any, ...]]:
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    return [
        (
            i,
            f"name {i} {'é' * (i % 7)}",
            i * 0.25,
            [f"t{i % 3}", f"u{i % 5}"],
            start + datetime.timedelta(seconds=i),
        )
        for i in range(ROWS)
    ]


def test_copy_10000_rows_then_read_them_back(run: Run, connect_kwargs: dict[str, Any]) -> None:
    records = make_records()

    async def main() -> None:
        conn = await connect(connect_kwargs)
        try:
            await conn.execute(
                "CREATE TEMP TABLE items (id int PRIMARY KEY, name text, score float8,"
                " tags text[], created timestamptz)"
            )
            status = await conn.copy_records_to_table("items", records=records)
            assert status == f"COPY {ROWS}"

            rows = await conn.fetch("SELECT * FROM items ORDER BY id")
            assert [tuple(row) for row in rows] == records
            count, total = await conn.fetchrow("SELECT count(*), sum(id) FROM items")
            assert (count, total) == (ROWS, ROWS * (ROWS - 1) // 2)
            row = await conn.fetchrow("SELECT name, tags FROM items WHERE id = $1", 1234)
            assert (row["name"], row["tags"]) == (records[1234][1], records[1234][3])

            # COPY out to a consumer slower than the server: asyncpg pauses reading.
            chunks: list[bytes] = []

            async def slow_sink(chunk: bytes) -> None:
                chunks.append(chunk)
                await asyncio.sleep(0)

            status = await conn.copy_from_query(
                "SELECT id, name FROM items ORDER BY id", output=slow_sink, format="csv"
            )
            assert status == f"COPY {ROWS}"
            assert b"".join(chunks).decode().splitlines() == [f"{r[0]},{r[1]}" for r in records]

            # A server-side cursor fetches in batches of 500.
            async with conn.transaction():
                ids = [r["id"] async for r in conn.cursor("SELECT id FROM items", prefetch=500)]
            assert sorted(ids) == list(range(ROWS))
        finally:
            await conn.close()

    run(main())


def test_transactions_roll_back(run: Run, connect_kwargs: dict[str, Any]) -> None:
    async def main() -> None:
        conn = await connect(connect_kwargs)
        try:
            await conn.execute("CREATE TEMP TABLE ledger (id int PRIMARY KEY)")
            await conn.execute("INSERT INTO ledger VALUES (1)")
            with pytest.raises(ZeroDivisionError):
                async with conn.transaction():
                    await conn.execute("INSERT INTO ledger VALUES (2)")
                    raise ZeroDivisionError
            async with conn.transaction():
                await conn.execute("INSERT INTO ledger VALUES (3)")
                with pytest.raises(asyncpg.UniqueViolationError):
                    async with conn.transaction():  # a savepoint
                        await conn.execute("INSERT INTO ledger VALUES (4)")
                        await conn.execute("INSERT INTO ledger VALUES (1)")
            rows = await conn.fetch("SELECT id FROM ledger ORDER BY id")
            assert [row["id"] for row in rows] == [1, 3]
            # A failed statement outside a transaction leaves the connection usable.
            with pytest.raises(asyncpg.DivisionByZeroError):
                await conn.fetchval("SELECT 1 / 0")
            assert await conn.fetchval("SELECT count(*) FROM ledger") == 2
            assert not conn.is_in_transaction()
        finally:
            await conn.close()

    run(main())


def test_listen_notify(run: Run, connect_kwargs: dict[str, Any]) -> None:
    async def main() -> None:
        listener, notifier = await connect(connect_kwargs), await connect(connect_kwargs)
        received: asyncio.Queue[tuple[int, str, str]] = asyncio.Queue()
        try:
            await listener.add_listener(
                "slipstream_test", lambda _c, pid, channel, payload: received.put_nowait(
                    (pid, channel, payload)
                )
            )
            for i in range(200):
                await notifier.execute("SELECT pg_notify('slipstream_test', $1)", f"event {i}")
            notifier_pid = notifier.get_server_pid()
            for i in range(200):
                got = await asyncio.wait_for(received.get(), 10)
                assert got == (notifier_pid, "slipstream_test", f"event {i}")
            # A notification in a rolled-back transaction is never delivered.
            with pytest.raises(RuntimeError):
                async with notifier.transaction():
                    await notifier.execute("NOTIFY slipstream_test, 'ghost'")
                    raise RuntimeError
            await notifier.execute("NOTIFY slipstream_test, 'after'")
            assert (await asyncio.wait_for(received.get(), 10))[2] == "after"
        finally:
            await listener.close()
            await notifier.close()

    run(main())


def test_pool_of_10_runs_queries_concurrently(run: Run, connect_kwargs: dict[str, Any]) -> None:
    async def main() -> None:
        async with asyncpg.create_pool(**connect_kwargs, min_size=10, max_size=10) as pool:

            async def query(i: int) -> tuple[int, int]:
                row = await pool.fetchrow(
                    "SELECT pg_backend_pid() AS pid, $1::int * 2 AS doubled, pg_sleep(0.02)", i
                )
                return row["pid"], row["doubled"]

            results = await asyncio.gather(*(query(i) for i in range(100)))
        assert [doubled for _, doubled in results] == [2 * i for i in range(100)]
        assert len({pid for pid, _ in results}) == 10

    run(main())


def test_cancelled_query_leaves_the_pool_usable(run: Run, connect_kwargs: dict[str, Any]) -> None:
    async def main() -> None:
        async with asyncpg.create_pool(**connect_kwargs, min_size=2, max_size=2) as pool:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(pool.fetchval("SELECT pg_sleep(30)"), 0.2)
            # The pool cancelled the query on the server (a CancelRequest on a new connection)
            # and took its connection back: both connections answer.
            values = await asyncio.gather(*(pool.fetchval("SELECT $1::int", i) for i in range(20)))
            assert values == list(range(20))
            async with pool.acquire() as conn:
                for _ in range(100):
                    sleeping = await conn.fetchval(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'"
                    )
                    if sleeping == 0:
                        break
                    await asyncio.sleep(0.05)
                assert sleeping == 0

                # A task cancelled in the middle of a query on a bare connection.
                task = asyncio.create_task(conn.fetchval("SELECT pg_sleep(30)"))
                await asyncio.sleep(0.1)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert await conn.fetchval("SELECT 42") == 42

    run(main())


def test_server_terminates_connections(run: Run, connect_kwargs: dict[str, Any]) -> None:
    async def main() -> None:
        victim, admin = await connect(connect_kwargs), await connect(connect_kwargs)
        lost = asyncio.Event()
        victim.add_termination_listener(lambda _conn: lost.set())
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", victim.get_server_pid())
            # No query in flight: only the transport's connection_lost can tell asyncpg.
            await asyncio.wait_for(lost.wait(), 5)
            assert victim.is_closed()
            with pytest.raises(asyncpg.InterfaceError, match="connection is closed"):
                await victim.fetchval("SELECT 1")

            # A pool whose connections the server drops makes new ones.
            settings = {"application_name": "slipstream-victims"}
            async with asyncpg.create_pool(
                **connect_kwargs, min_size=3, max_size=3, server_settings=settings
            ) as pool:
                before = set(await asyncio.gather(
                    *(pool.fetchval("SELECT pg_backend_pid(), pg_sleep(0.05)") for _ in range(3))
                ))
                terminated = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = 'slipstream-victims'"
                )
                assert terminated == 3
                await asyncio.sleep(0.1)  # the pool's connections see their ends
                after = set(await asyncio.gather(
                    *(pool.fetchval("SELECT pg_backend_pid(), pg_sleep(0.05)") for _ in range(3))
                ))
                assert len(after) == 3
                assert not before & after
        finally:
            await victim.close()
            await admin.close()

    run(main())
