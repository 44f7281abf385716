"""Render a :class:`LoopMetrics` snapshot in Prometheus' text exposition format (0.0.4).

Serve the text from the application's own HTTP server (docs/observability.md
has an aiohttp and an ASGI handler); slipstream opens no port of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .metrics import LAG_BUCKET_BOUNDS, LoopMetrics

__all__ = ["CONTENT_TYPE", "render_prometheus"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Content-Type to serve :func:`render_prometheus`'s text with."""

# (name, type, help, attribute of LoopMetrics) of the plain samples.
_SAMPLES = (
    ("turns_total", "counter", "Turns of the event loop.", "turns"),
    ("callbacks_total", "counter", "Callbacks run.", "callbacks_run"),
    ("timers_scheduled_total", "counter", "Timers scheduled (call_later, call_at).",
     "timers_scheduled"),
    ("timers_cancelled_total", "counter", "Timers cancelled before they were due.",
     "timers_cancelled"),
    ("timers_fired_total", "counter", "Timers whose callback was run.", "timers_fired"),
    ("busy_seconds_total", "counter", "Time spent running callbacks.", "busy_seconds"),
    ("poll_seconds_total", "counter", "Time spent waiting in the poller.", "poll_seconds"),
    ("longest_stretch_seconds", "gauge", "The longest run of callbacks between two polls.",
     "longest_stretch"),
    ("utilisation", "gauge", "Share of running time spent in callbacks since the last scrape.",
     "utilisation_recent"),
    ("tasks", "gauge", "Tasks not yet done.", "live_tasks"),
    ("transports", "gauge", "Open transports.", "open_transports"),
    ("servers", "gauge", "Serving servers.", "open_servers"),
    ("received_bytes", "gauge", "Bytes received by the open TCP transports.", "bytes_received"),
    ("sent_bytes", "gauge", "Bytes the peers of the open TCP transports acknowledged.",
     "bytes_sent"),
)

# The histogram's buckets from 1 µs to ~67 s: the rest stay in +Inf.
_EXPOSED_BUCKETS = 27


def _labels(labels: Mapping[str, str], extra: str = "") -> str:
    parts = [f'{key}="{_escape(value)}"' for key, value in labels.items()]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def render_prometheus(
    metrics: LoopMetrics, *, prefix: str = "slipstream_loop_", labels: Mapping[str, str] = {}
) -> str:
    """The snapshot as Prometheus text: counters, gauges and the lag histogram.

    ``labels`` are added to every sample (for instance ``{"worker": "3"}``).
    The histogram (``..._lag_seconds``) is cumulative since the loop was made,
    as Prometheus expects; the slowest callback (timed in debug mode only) is
    a gauge with its callback as a label.
    """
    lines: list[str] = []
    plain = _labels(labels)
    for name, kind, text, attribute in _SAMPLES:
        value = getattr(metrics, attribute)
        if value is None:
            continue
        lines += _header(prefix + name, kind, text)
        lines.append(f"{prefix}{name}{plain} {_number(value)}")
    name = prefix + "lag_seconds"
    lines += _header(name, "histogram", "How late timers ran: the most overdue per turn.")
    lines += _histogram_lines(name, labels, metrics.lag.counts)
    lines.append(f"{name}_sum{plain} {_number(metrics.lag.total_seconds)}")
    lines.append(f"{name}_count{plain} {metrics.lag.count}")
    slowest = metrics.slowest_callback
    if slowest.callback:
        name = prefix + "slowest_callback_seconds"
        lines += _header(name, "gauge", "The slowest callback timed (debug mode).")
        callback = _labels(labels, 'callback="' + _escape(slowest.callback) + '"')
        lines.append(f"{name}{callback} {_number(slowest.seconds)}")
    return "\n".join(lines) + "\n"


def _header(name: str, kind: str, text: str) -> list[str]:
    return [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]


def _histogram_lines(name: str, labels: Mapping[str, str], counts: Iterable[int]) -> list[str]:
    lines = []
    cumulative = 0
    all_counts = list(counts)
    for bound, count in zip(LAG_BUCKET_BOUNDS[:_EXPOSED_BUCKETS], all_counts, strict=False):
        cumulative += count
        bucket = _labels(labels, 'le="' + format(bound, ".6g") + '"')
        lines.append(f"{name}_bucket{bucket} {cumulative}")
    infinite = _labels(labels, 'le="+Inf"')
    lines.append(f"{name}_bucket{infinite} {sum(all_counts)}")
    return lines
