"""Name resolution, on stock asyncio and on slipstream alike."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import socket
from asyncio import base_events
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

import slipstream
from slipstream.net.dns import numeric_address_info, numeric_getaddrinfo

Run = Callable[[Coroutine[Any, Any, Any]], Any]

HOSTS = ["127.0.0.1", "10.1.2.3", b"127.0.0.1", "::1", "::0001", "0:0::1", "::ffff:1.2.3.4",
         "fe80::1", "fe80::1%lo", "1.2.3", "localhost", "", None]
PORTS = [0, 80, 65535, 65536, -1, None, "", b"", "80", b"443", "080", "http", " 80", True]
FAMILIES = [socket.AF_UNSPEC, socket.AF_INET, socket.AF_INET6]
KINDS = [(0, 0), (0, socket.IPPROTO_TCP), (0, socket.IPPROTO_UDP), (socket.SOCK_STREAM, 0),
         (socket.SOCK_DGRAM, 0), (socket.SOCK_STREAM, socket.IPPROTO_UDP), (socket.SOCK_RAW, 0)]
FLAGS = [0, socket.AI_NUMERICHOST, socket.AI_PASSIVE, socket.AI_CANONNAME]


def outcome(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception as exc:
        return type(exc), exc.args


def test_numeric_answers_are_exactly_the_resolvers() -> None:
    checked = 0
    for host, port, family, (kind, proto), flags in itertools.product(
        HOSTS, PORTS, FAMILIES, KINDS, FLAGS
    ):
        answer = numeric_getaddrinfo(host, port, family, kind, proto, flags)
        if answer is None:
            continue
        checked += 1
        expected = socket.getaddrinfo(host, port, family, kind, proto, flags)
        assert answer == expected, (host, port, family, kind, proto, flags)
        assert [type(entry[0]) for entry in answer] == [type(entry[0]) for entry in expected]
        assert [type(entry[1]) for entry in answer] == [type(entry[1]) for entry in expected]
    assert checked > 500


def test_getaddrinfo_matches_the_resolver(run: Run) -> None:
    # Host names are looked up for IPv4 only: where /etc/hosts has no IPv6
    # entry for localhost, that lookup goes to DNS and may time out.
    cases = [
        (host, port, family, kind, proto, flags)
        for host in ("127.0.0.1", "::1", "::0001", "localhost")
        for port in (0, 8080, "8080", None, "nonexistent-service-name")
        for family in FAMILIES
        for kind, proto in KINDS
        for flags in (0, socket.AI_NUMERICHOST)
        if host != "localhost" or family == socket.AF_INET
    ]

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        results: list[Any] = []
        for host, port, family, kind, proto, flags in cases:
            try:
                results.append(await loop.getaddrinfo(
                    host, port, family=family, type=kind, proto=proto, flags=flags))
            except Exception as exc:
                results.append((type(exc), exc.args))
        return results

    expected = [
        outcome(lambda c=case: socket.getaddrinfo(*c))  # type: ignore[misc]
        for case in cases
    ]
    assert run(main()) == expected


def test_getnameinfo(run: Run) -> None:
    async def main() -> tuple[str, str]:
        loop = asyncio.get_running_loop()
        flags = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV
        return await loop.getnameinfo(("127.0.0.1", 8080), flags)

    assert run(main()) == ("127.0.0.1", "8080")


def test_numeric_lookups_skip_the_executor() -> None:
    class NoThreads(concurrent.futures.ThreadPoolExecutor):
        def submit(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("a numeric address went to a thread")

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(NoThreads())
        return await loop.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)

    with asyncio.Runner(loop_factory=slipstream.new_event_loop) as runner:
        assert runner.run(main()) == socket.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)


@pytest.mark.parametrize("host", ["127.0.0.1", b"127.0.0.1", "::1", "::0001", "1.2.3", "x.org",
                                  "fe80::1%lo", None])
@pytest.mark.parametrize("port", [0, 80, "80", None, "", "http", 80.0])
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", [socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_RAW])
def test_address_shortcut_is_asyncios(host: Any, port: Any, family: int, kind: int) -> None:
    # asyncio's own shortcut is the reference here.
    expected = base_events._ipaddr_info(host, port, family, kind, 0)  # type: ignore[attr-defined]
    assert numeric_address_info(host, port, family, kind, 0) == expected
