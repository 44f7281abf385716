"""Where the library tests find their servers, and what happens when one is missing.

PostgreSQL and Redis are real servers that ``scripts/test.sh`` starts on
loopback before the tests (``start_services``) and announces through
environment variables:

* ``SLIPSTREAM_TEST_PG_DSN``: a PostgreSQL 15 server without TLS, so that
  asyncpg's default ``sslmode=prefer`` is refused TLS and carries on in plain
  text (through ``transport.set_protocol``);
* ``SLIPSTREAM_TEST_PG_TLS_DSN``: a second server from the same data with TLS
  on; ``SLIPSTREAM_TEST_PG_TLS_CA`` is the certificate to trust for it;
* ``SLIPSTREAM_TEST_REDIS_URL`` and ``SLIPSTREAM_TEST_REDIS_UNIX_URL``: one
  redis-server, over TCP and over a Unix socket.

When a variable is missing, ``start_services`` may have left the reason in
``SLIPSTREAM_TEST_PG_ERROR`` / ``SLIPSTREAM_TEST_REDIS_ERROR``.  In CI
(``CI=true``) a missing server fails its tests with that reason, because a
green run that silently skipped them would prove nothing; a developer without
the server gets skips that say how to get it.

The ``run`` fixture here also fails a test whose loop called its exception
handler: a library that gets its answers while the loop logs errors behind
its back is not running unchanged.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from tests.conftest import unexpected_reports

T = TypeVar("T")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def service_url(variable: str, service: str, error_variable: str) -> str:
    """The value of ``variable``; fails (in CI) or skips (elsewhere) the test without it."""
    value = os.environ.get(variable, "")
    if value:
        return value
    reason = os.environ.get(error_variable) or f"{variable} is not set"
    message = (
        f"{service} is not available for the library tests: {reason}. "
        f"scripts/test.sh starts it (start_services) and sets {variable}."
    )
    if _in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture
def pg_dsn() -> str:
    """DSN of the plain-text PostgreSQL server."""
    return service_url("SLIPSTREAM_TEST_PG_DSN", "PostgreSQL", "SLIPSTREAM_TEST_PG_ERROR")


@pytest.fixture
def pg_tls() -> tuple[str, str]:
    """DSN of the PostgreSQL server with TLS on, and the path of the CA that signed it."""
    dsn = service_url(
        "SLIPSTREAM_TEST_PG_TLS_DSN", "PostgreSQL with TLS", "SLIPSTREAM_TEST_PG_ERROR"
    )
    ca = service_url("SLIPSTREAM_TEST_PG_TLS_CA", "PostgreSQL's CA", "SLIPSTREAM_TEST_PG_ERROR")
    return dsn, ca


@pytest.fixture
def redis_url() -> str:
    """URL of the Redis server over TCP."""
    return service_url("SLIPSTREAM_TEST_REDIS_URL", "Redis", "SLIPSTREAM_TEST_REDIS_ERROR")


@pytest.fixture
def redis_unix_url() -> str:
    """URL of the same Redis server over its Unix socket."""
    return service_url("SLIPSTREAM_TEST_REDIS_UNIX_URL", "Redis", "SLIPSTREAM_TEST_REDIS_ERROR")


@pytest.fixture
def run(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> Callable[[Coroutine[Any, Any, T]], T]:
    """Like tests/conftest.py's ``run``, and the loop must report no error on the way.

    A library that works may still leave the loop calling its exception
    handler (a callback that raised, a transport that failed under a
    protocol): that is a difference from asyncio as real as a wrong answer.
    """

    def runner(coro: Coroutine[Any, Any, T]) -> T:
        reported: list[dict[str, Any]] = []

        def factory() -> asyncio.AbstractEventLoop:
            loop = loop_factory()
            loop.set_exception_handler(lambda _loop, context: reported.append(context))
            return loop

        with asyncio.Runner(loop_factory=factory) as r:
            result = r.run(coro)
        assert unexpected_reports(reported) == [], f"the loop reported errors: {reported}"
        return result

    return runner
