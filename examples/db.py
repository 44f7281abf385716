"""Database queries with asyncpg: a connection pool, concurrent queries, a transaction.

    python examples/db.py postgresql://USER@HOST:PORT/DB
    DATABASE_URL=postgresql://... python examples/db.py

Eight queries run at once through a pool of four connections (each takes 50 ms on the
server, so they overlap); then a temporary table is filled with `executemany`, and a
transaction that breaks a CHECK constraint is rolled back as a whole.

Needs asyncpg (`pip install asyncpg`) and a PostgreSQL server to talk to; without a DSN
it says so and exits with status 2.
"""

import asyncio
import os
import sys

import asyncpg  # type: ignore[import-untyped]

POOL_SIZE = 4
QUERIES = 8
FRUIT = [("apple", 5), ("banana", 12), ("cherry", 40)]


class Pool:
    """An asyncpg pool that counts how many of its connections are busy at once."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.active = 0
        self.max_active = 0

    async def square(self, n: int) -> int:
        async with self.pool.acquire() as connection:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            try:
                query = "SELECT $1::int * $1::int FROM pg_sleep(0.05)"
                value: int = await connection.fetchval(query, n)
                return value
            finally:
                self.active -= 1


async def transfer(connection: asyncpg.Connection, amount: int) -> None:
    """Move ``amount`` apples to the bananas, in one transaction."""
    async with connection.transaction():
        update = "UPDATE fruit SET count = count + $2 WHERE name = $1"
        await connection.execute(update, "banana", amount)
        await connection.execute(update, "apple", -amount)


async def main(dsn: str) -> None:
    async with asyncpg.create_pool(dsn, min_size=1, max_size=POOL_SIZE) as raw_pool:
        pool = Pool(raw_pool)
        squares = await asyncio.gather(*(pool.square(n) for n in range(1, QUERIES + 1)))
        print(f"squares from the server: {squares}")
        print(f"max queries at once: {pool.max_active} (pool of {POOL_SIZE})")

        async with raw_pool.acquire() as connection:
            await connection.execute(
                "CREATE TEMPORARY TABLE fruit (name text PRIMARY KEY, count int CHECK (count >= 0))"
            )
            await connection.executemany("INSERT INTO fruit VALUES ($1, $2)", FRUIT)
            await transfer(connection, 3)
            print("moved 3 apples: committed")
            try:
                await transfer(connection, 10)
            except asyncpg.CheckViolationError:
                print("moving 10 apples breaks the CHECK constraint: rolled back")
            rows = await connection.fetch("SELECT name, count FROM fruit ORDER BY name")
            print("fruit: " + ", ".join(f"{row['name']} {row['count']}" for row in rows))


if __name__ == "__main__":
    dsn = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("DATABASE_URL", "")
    if not dsn:
        print(
            "db.py needs a PostgreSQL server: pass its DSN as the argument "
            "(python examples/db.py postgresql://user@127.0.0.1:5432/postgres) "
            "or set DATABASE_URL.",
            file=sys.stderr,
        )
        sys.exit(2)
    asyncio.run(main(dsn))
