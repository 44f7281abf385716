"""``loop.metrics()`` and its Prometheus text, on real loops doing known work.

Metrics are slipstream's own (asyncio has none to compare with), so these run
on slipstream with either backend; one test repeats a snapshot in child
processes on both builds (compiled and ``SLIPSTREAM_PURE=1``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import slipstream
from slipstream.backends import create_backend
from slipstream.observe import (
    LAG_BUCKET_BOUNDS,
    LagHistogram,
    LoopMetrics,
    MetricsUnavailable,
    render_prometheus,
)

BACKENDS: dict[str, Callable[[], slipstream.EventLoop]] = {
    "epoll": slipstream.EventLoop,
    "selector": lambda: slipstream.EventLoop(backend=create_backend("selector")),
}


@pytest.fixture(params=sorted(BACKENDS))
def loop(request: pytest.FixtureRequest) -> Iterator[slipstream.EventLoop]:
    made = BACKENDS[request.param]()
    yield made
    made.close()


def test_counts_callbacks_and_timers(loop: slipstream.EventLoop) -> None:
    before = loop.metrics()
    fired: list[int] = []
    for index in range(10):
        loop.call_soon(fired.append, index)
    timers = [loop.call_later(0.001, fired.append, 100 + index) for index in range(5)]
    timers[0].cancel()
    timers[1].cancel()
    loop.run_until_complete(asyncio.sleep(0.02))
    after = loop.metrics()
    assert len(fired) == 13
    # asyncio.sleep adds one timer and a few callbacks of its own.
    assert after.timers_scheduled - before.timers_scheduled == 6
    assert after.timers_cancelled - before.timers_cancelled == 2
    assert after.timers_fired - before.timers_fired == 4
    assert after.callbacks_run - before.callbacks_run >= 13 + 1
    assert after.turns > before.turns
    assert after.live_tasks == 0


def test_lag_records_how_late_timers_ran(loop: slipstream.EventLoop) -> None:
    loop.call_later(0.01, lambda: None)
    loop.call_soon(time.sleep, 0.06)  # holds the loop past the timer's deadline
    loop.run_until_complete(asyncio.sleep(0.08))
    metrics = loop.metrics()
    assert metrics.lag.count >= 2
    assert 0.045 <= metrics.lag.max < 1.0
    assert metrics.lag.p99 == metrics.lag.max  # the top bucket is bounded by the max
    assert metrics.lag.p50 <= metrics.lag.p90 <= metrics.lag.p99
    assert metrics.longest_stretch >= 0.055
    assert metrics.lag.mean > 0.0


def test_recent_is_since_the_previous_snapshot(loop: slipstream.EventLoop) -> None:
    loop.run_until_complete(asyncio.sleep(0.01))
    first = loop.metrics()
    second = loop.metrics()
    assert second.lag_recent.count == 0
    loop.run_until_complete(asyncio.sleep(0.01))
    third = loop.metrics()
    assert third.lag_recent.count == third.lag.count - second.lag.count >= 1
    assert first.lag_recent.count == first.lag.count  # the first is since the start


def test_utilisation_tells_busy_from_idle(loop: slipstream.EventLoop) -> None:
    loop.run_until_complete(asyncio.sleep(0.1))
    idle = loop.metrics()
    assert idle.utilisation_recent < 0.5
    assert idle.poll_seconds >= 0.08

    async def busy() -> None:
        for _ in range(5):
            time.sleep(0.02)
            await asyncio.sleep(0)

    loop.run_until_complete(busy())
    assert loop.metrics().utilisation_recent > 0.5


def test_snapshot_inside_a_running_loop_counts_the_current_run(loop: slipstream.EventLoop) -> None:
    async def measure() -> LoopMetrics:
        time.sleep(0.03)
        return loop.metrics()

    metrics = loop.run_until_complete(measure())
    assert metrics.busy_seconds >= 0.025
    assert metrics.live_tasks == 1


def test_debug_mode_names_the_slowest_callback(loop: slipstream.EventLoop) -> None:
    loop.set_debug(True)

    async def dawdle() -> None:
        time.sleep(0.03)

    loop.run_until_complete(loop.create_task(dawdle(), name="dawdler"))
    slowest = loop.metrics().slowest_callback
    assert slowest.seconds >= 0.025
    assert slowest.callback.startswith("<Task finished name='dawdler' coro=<")


def test_transports_servers_and_bytes(loop: slipstream.EventLoop) -> None:
    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)  # type: ignore[attr-defined]

    async def scenario() -> tuple[LoopMetrics, LoopMetrics]:
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"x" * 1000)
        await reader.readexactly(1000)
        await asyncio.sleep(0.05)  # let the acknowledgements come back
        during = loop.metrics()
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0.01)
        return during, loop.metrics()

    during, after = loop.run_until_complete(scenario())
    assert during.open_servers == 1
    assert during.open_transports == 2  # the client's and the one the server accepted
    if during.bytes_received is not None:  # Linux: the kernel's TCP_INFO counts
        assert during.bytes_received == 2000  # 1000 each way
        # The kernel counts the connecting side's SYN as one acknowledged byte.
        assert during.bytes_sent is not None and 2000 <= during.bytes_sent <= 2002
    assert after.open_servers == 0
    assert after.open_transports == 0


def test_metrics_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIPSTREAM_METRICS", "0")
    loop = slipstream.new_event_loop()
    try:
        loop.run_until_complete(asyncio.sleep(0.001))
        assert loop.statistics() is None
        with pytest.raises(MetricsUnavailable):
            loop.metrics()
    finally:
        loop.close()


def test_percentiles_from_buckets() -> None:
    counts = [0] * len(LAG_BUCKET_BOUNDS)
    counts[3] = 90  # under 8 µs
    counts[10] = 9  # under 1.024 ms
    counts[20] = 1  # under ~1.05 s
    histogram = LagHistogram(tuple(counts), total_seconds=0.6, max=0.6)
    assert histogram.count == 100
    assert histogram.p50 == LAG_BUCKET_BOUNDS[3] == 8e-6
    assert histogram.p90 == 8e-6
    assert histogram.p99 == LAG_BUCKET_BOUNDS[10]
    assert histogram.percentile(1.0) == 0.6  # the top bucket, bounded by the max
    assert histogram.mean == pytest.approx(0.006)
    with pytest.raises(ValueError):
        histogram.percentile(0)
    empty = LagHistogram((0,) * len(LAG_BUCKET_BOUNDS), 0.0, 0.0)
    assert empty.p99 == 0.0 and empty.mean == 0.0
    assert histogram.since(empty) == histogram
    assert histogram.since(histogram).count == 0


_SAMPLE = re.compile(r'^[a-z_]+(\{([a-z]+="([^"\\]|\\.)*",?)+\})? -?[0-9.e+-]+$')


def test_prometheus_text_is_well_formed(loop: slipstream.EventLoop) -> None:
    loop.call_later(0.001, lambda: None)
    loop.run_until_complete(asyncio.sleep(0.01))
    text = render_prometheus(loop.metrics(), labels={"worker": 'a"b'})
    lines = text.splitlines()
    assert text.endswith("\n")
    for line in lines:
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) slipstream_loop_[a-z_]+ ", line), line
        else:
            assert _SAMPLE.match(line), line
            assert 'worker="a\\"b"' in line
    buckets = [int(line.rsplit(" ", 1)[1]) for line in lines if "_lag_seconds_bucket" in line]
    assert buckets == sorted(buckets) and buckets[-1] >= 1
    count = next(line for line in lines if line.startswith("slipstream_loop_lag_seconds_count"))
    assert int(count.rsplit(" ", 1)[1]) == buckets[-1]
    assert '# TYPE slipstream_loop_lag_seconds histogram' in lines
    assert any(line.startswith("slipstream_loop_turns_total{") for line in lines)


_CHILD = textwrap.dedent("""\
    import asyncio, json, time
    import slipstream

    async def main():
        loop = asyncio.get_running_loop()
        for _ in range(3):
            await asyncio.sleep(0.005)
        loop.call_soon(time.sleep, 0.03)
        await asyncio.sleep(0.01)
        m = loop.metrics()
        print(json.dumps({"compiled": slipstream.compiled, "fired": m.timers_fired,
                          "lag_count": m.lag.count, "lag_max": m.lag.max,
                          "stretch": m.longest_stretch, "tasks": m.live_tasks}))

    slipstream.run(main())
""")


@pytest.mark.parametrize("pure", ["0", "1"])
def test_both_builds_count_the_same(tmp_path: Path, pure: str) -> None:
    script = tmp_path / "snapshot.py"
    script.write_text(_CHILD)
    source = Path(slipstream.__file__).resolve().parents[1]
    env = {**os.environ, "SLIPSTREAM_PURE": pure, "PYTHONPATH": str(source)}
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    if pure == "1":
        assert report["compiled"] is False
    assert report["fired"] == 4
    assert report["lag_count"] == 4
    assert 0.015 <= report["lag_max"] < 1.0
    assert report["stretch"] >= 0.025
    assert report["tasks"] == 1


def test_the_bench_can_measure_with_metrics_off() -> None:
    from slipstream.bench.loops import METRICS_OFF_LOOPS, is_available, loop_environment

    assert METRICS_OFF_LOOPS == ("slipstream-nometrics", "slipstream-pure-nometrics")
    assert is_available("slipstream-nometrics")
    # A separate pure row exists only beside the compiled build, as for slipstream-pure.
    assert is_available("slipstream-pure-nometrics") == is_available("slipstream-pure")
    assert loop_environment("slipstream-nometrics") == {"SLIPSTREAM_METRICS": "0"}
    assert loop_environment("slipstream-pure-nometrics") == {
        "SLIPSTREAM_METRICS": "0",
        "SLIPSTREAM_PURE": "1",
    }
    assert loop_environment("slipstream") == {}


def test_the_documented_aiohttp_handler_serves_the_text() -> None:
    from aiohttp import ClientSession, web

    from slipstream.observe import CONTENT_TYPE

    async def metrics(request: web.Request) -> web.Response:  # as in docs/observability.md
        text = render_prometheus(asyncio.get_running_loop().metrics())  # type: ignore[attr-defined]
        return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})

    async def scenario() -> tuple[int, str, str]:
        app = web.Application()
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            url = f"http://127.0.0.1:{port}/metrics"
            async with ClientSession() as session, session.get(url) as response:
                return response.status, response.headers["Content-Type"], await response.text()
        finally:
            await runner.cleanup()

    status, content_type, text = slipstream.run(scenario())
    assert status == 200
    assert content_type == CONTENT_TYPE
    assert "slipstream_loop_servers 1\n" in text
    assert "slipstream_loop_transports 2\n" in text  # the request's two ends
