"""``loop.metrics()``: a typed snapshot of what a running loop has been doing.

The loop core counts (``Scheduler.statistics()``: integers bumped per batch or
timer, times from the clock reads a polling turn already makes); this module
turns those raw counters into a :class:`LoopMetrics` -- percentiles, shares,
what changed since the previous snapshot -- and adds what only the layers
above the core know: live tasks, open transports and servers, bytes moved.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import weakref
from dataclasses import dataclass
from typing import Any

from ..core.scheduler import LAG_BUCKETS

__all__ = ["LagHistogram", "LoopMetrics", "MetricsSupport", "MetricsUnavailable", "SlowCallback"]

LAG_BUCKET_BOUNDS: tuple[float, ...] = tuple(2.0**index / 1e6 for index in range(LAG_BUCKETS))
"""Upper bound, in seconds, of each lateness bucket: 1 µs, 2 µs, 4 µs, ... (the last is open)."""

# struct tcp_info (linux/tcp.h): tcpi_bytes_acked and tcpi_bytes_received are
# the two u64 at offsets 120 and 128 (Linux 4.1+).  The kernel counts them for
# free; counting in the transports would cost every read and write.
_TCP_INFO_BYTES = struct.Struct("=QQ")
_TCP_INFO_BYTES_OFFSET = 120
_TCP_INFO_SIZE = _TCP_INFO_BYTES_OFFSET + _TCP_INFO_BYTES.size


@dataclass(frozen=True)
class LagHistogram:
    """How late the loop ran its timers: one sample per turn that had timers due.

    A sample is the lateness of that turn's most overdue timer.  ``counts[i]``
    holds the samples under ``LAG_BUCKET_BOUNDS[i]`` seconds and at least half
    that (the first bucket everything under 1 µs, the last everything above),
    so a percentile is known to within a factor of two; it is reported as its
    bucket's upper bound, never above ``max``.
    """

    counts: tuple[int, ...]
    total_seconds: float
    max: float

    @property
    def count(self) -> int:
        """How many samples."""
        return sum(self.counts)

    @property
    def mean(self) -> float:
        """Mean lateness in seconds (0.0 without samples)."""
        count = self.count
        return self.total_seconds / count if count else 0.0

    def percentile(self, fraction: float) -> float:
        """The lateness ``fraction`` (0 < fraction <= 1) of the samples are at most, in seconds."""
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
        count = self.count
        if not count:
            return 0.0
        wanted = fraction * count
        seen = 0
        for bound, bucket_count in zip(LAG_BUCKET_BOUNDS, self.counts, strict=True):
            seen += bucket_count
            if seen >= wanted:
                return min(bound, self.max)
        return self.max

    @property
    def p50(self) -> float:
        return self.percentile(0.5)

    @property
    def p90(self) -> float:
        return self.percentile(0.9)

    @property
    def p99(self) -> float:
        return self.percentile(0.99)

    def since(self, earlier: LagHistogram) -> LagHistogram:
        """The samples added after ``earlier`` (a snapshot of the same histogram)."""
        counts = tuple(a - b for a, b in zip(self.counts, earlier.counts, strict=True))
        # The exact maximum of the interval is not kept: its highest
        # non-empty bucket bounds it, and so does the maximum of all time.
        top = max((i for i, n in enumerate(counts) if n), default=None)
        peak = 0.0 if top is None else min(self.max, LAG_BUCKET_BOUNDS[top])
        return LagHistogram(counts, self.total_seconds - earlier.total_seconds, peak)


@dataclass(frozen=True)
class SlowCallback:
    """The slowest single callback timed, named as asyncio's debug messages name it.

    Callbacks are timed one by one only in debug mode (that is what asyncio's
    slow-callback warning needs too); otherwise ``seconds`` is 0.0 and
    ``callback`` empty, and ``LoopMetrics.longest_stretch`` bounds it.
    """

    seconds: float
    callback: str


@dataclass(frozen=True)
class LoopMetrics:
    """One snapshot of a loop's metrics (``loop.metrics()``); counts are since the loop was made."""

    turns: int
    """Turns of the loop: each polls or skips a poll, then runs the callbacks ready."""
    callbacks_run: int
    timers_scheduled: int
    timers_cancelled: int
    timers_fired: int
    busy_seconds: float
    """Time spent running (inside ``run_forever``) but not in the poller: callbacks."""
    poll_seconds: float
    """Time spent inside the poller (waiting for I/O or the next timer) while running."""
    lag: LagHistogram
    """Timer lateness since the loop was made."""
    lag_recent: LagHistogram
    """Timer lateness since the previous ``metrics()`` call (or since the start)."""
    utilisation_recent: float
    """``utilisation`` over the time since the previous ``metrics()`` call."""
    longest_stretch: float
    """The longest the loop ran callbacks without looking at I/O, in seconds."""
    slowest_callback: SlowCallback
    live_tasks: int
    open_transports: int
    open_servers: int
    bytes_received: int | None
    """Bytes received by the open TCP transports (the kernel's count); None off Linux."""
    bytes_sent: int | None
    """Bytes the peers of the open TCP transports acknowledged; None off Linux.

    The kernel's count: a connection this side opened counts its SYN as one."""

    @property
    def utilisation(self) -> float:
        """The share of running time spent in callbacks rather than in the poller (0.0-1.0)."""
        return _share(self.busy_seconds, self.poll_seconds)


def _share(busy: float, poll: float) -> float:
    total = busy + poll
    return busy / total if total > 0.0 else 0.0


class _MetricsState:
    __slots__ = ("previous", "servers")

    def __init__(self) -> None:
        # (lag, busy, poll) of the previous snapshot.
        self.previous: tuple[LagHistogram, float, float] | None = None
        self.servers: weakref.WeakSet[asyncio.AbstractServer] = weakref.WeakSet()


class MetricsSupport:
    """The ``metrics()`` method of the event loop, built on the core's ``statistics()``.

    It also keeps a weak set of the servers the loop made (the core does not
    know servers) for the ``open_servers`` count.
    """

    # Provided by the loop this is mixed into.
    statistics: Any
    is_running: Any
    time: Any
    claimed_fd_owners: Any

    # One attribute for all of this layer's state, made on first use: past 30
    # names in the loop's instance dict, CPython stops sharing its keys and
    # every attribute access of the interpreted loop gets slower.
    _metrics_state: _MetricsState | None = None

    def _metrics(self) -> _MetricsState:
        state = self._metrics_state
        if state is None:
            state = self._metrics_state = _MetricsState()
        return state

    async def create_server(self, *args: Any, **kwargs: Any) -> asyncio.Server:
        server: asyncio.Server = await super().create_server(*args, **kwargs)  # type: ignore[misc]
        self._track_server(server)
        return server

    async def create_unix_server(self, *args: Any, **kwargs: Any) -> asyncio.Server:
        server: asyncio.Server = await super().create_unix_server(*args, **kwargs)  # type: ignore[misc]
        self._track_server(server)
        return server

    def _track_server(self, server: asyncio.AbstractServer) -> None:
        self._metrics().servers.add(server)

    def metrics(self) -> LoopMetrics:
        """A snapshot of the loop's metrics; also starts the next "recent" interval.

        Call it from the loop's thread (a coroutine or callback, or while the
        loop is not running).  Raises :class:`MetricsUnavailable` if the loop
        was made with ``SLIPSTREAM_METRICS=0``.
        """
        raw = self.statistics()
        if raw is None:
            raise MetricsUnavailable("this loop does not count (SLIPSTREAM_METRICS=0)")
        (turns, callbacks, scheduled, cancelled, fired, lag_counts, lag_max, lag_sum,
         run_time, poll, run_started, longest_stretch, slowest, slowest_name) = raw
        if run_started:
            run_time += self.time() - run_started  # the run in progress
        busy = max(0.0, run_time - poll)
        lag = LagHistogram(lag_counts, lag_sum, lag_max)
        state = self._metrics()
        previous = state.previous
        if previous is None:
            lag_recent, busy_recent, poll_recent = lag, busy, poll
        else:
            lag_recent = lag.since(previous[0])
            busy_recent, poll_recent = busy - previous[1], poll - previous[2]
        state.previous = (lag, busy, poll)
        transports = [
            owner for owner in self.claimed_fd_owners()
            if isinstance(owner, asyncio.BaseTransport) and not owner.is_closing()
        ]
        received, sent = _tcp_bytes(transports)
        return LoopMetrics(
            turns=turns,
            callbacks_run=callbacks,
            timers_scheduled=scheduled,
            timers_cancelled=cancelled,
            timers_fired=fired,
            busy_seconds=busy,
            poll_seconds=poll,
            lag=lag,
            lag_recent=lag_recent,
            utilisation_recent=_share(busy_recent, poll_recent),
            longest_stretch=longest_stretch,
            slowest_callback=SlowCallback(slowest, slowest_name),
            live_tasks=len(asyncio.all_tasks(self)),  # type: ignore[arg-type]
            open_transports=len(transports),
            open_servers=sum(1 for server in state.servers if server.is_serving()),
            bytes_received=received,
            bytes_sent=sent,
        )


class MetricsUnavailable(RuntimeError):
    """``loop.metrics()`` on a loop that does not count (made with ``SLIPSTREAM_METRICS=0``)."""


def _tcp_bytes(transports: list[asyncio.BaseTransport]) -> tuple[int | None, int | None]:
    """(received, acknowledged) bytes over the TCP sockets of ``transports``, from TCP_INFO."""
    option = getattr(socket, "TCP_INFO", None)
    if option is None:
        return None, None
    received = sent = 0
    for transport in transports:
        sock = transport.get_extra_info("socket")
        if sock is None or sock.type != socket.SOCK_STREAM:
            continue
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            continue
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, option, _TCP_INFO_SIZE)
        except OSError:
            continue
        if len(info) < _TCP_INFO_SIZE:
            return None, None  # a kernel older than 4.1 does not count bytes
        acked, got = _TCP_INFO_BYTES.unpack_from(info, _TCP_INFO_BYTES_OFFSET)
        received += got
        sent += acked
    return received, sent
