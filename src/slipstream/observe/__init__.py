"""Seeing inside a running loop: metrics, the blocked-loop watchdog, the task tree.

* ``loop.metrics()`` (:class:`MetricsSupport`, part of every slipstream loop)
  returns a :class:`LoopMetrics` snapshot, on unless ``SLIPSTREAM_METRICS=0``:
  the core counts with integers it bumps per batch or timer and with the clock
  reads a polling turn makes anyway.  :func:`render_prometheus` turns one into Prometheus text.
* :class:`BlockingWatchdog` reports, while it happens, a callback that holds
  the loop longer than a threshold; :func:`watch_blocking` attaches one as
  ``slipstream.run(..., blocking_ms=N)`` and ``SLIPSTREAM_BLOCKING_MS`` ask.

* :func:`slipstream.dump_tasks` (:mod:`.tasktree`) returns the tree of a
  loop's tasks; :mod:`.inspector` serves it to ``python -m slipstream
  ps|pstree PID`` from a process that opted in (imported only then).

Metrics and the watchdog reach the core through its public hooks only: ``statistics()``,
``watch_callbacks()`` and ``current_callback()`` of
:class:`slipstream.core.scheduler.Scheduler`.  docs/observability.md shows
their output.
"""

from __future__ import annotations

from typing import Any

from .metrics import (
    LAG_BUCKET_BOUNDS,
    LagHistogram,
    LoopMetrics,
    MetricsSupport,
    MetricsUnavailable,
    SlowCallback,
)
from .prometheus import CONTENT_TYPE, render_prometheus
from .watchdog import BlockingWatchdog, blocking_ms_from_environment, check_blocking_ms, logger

__all__ = [
    "CONTENT_TYPE",
    "LAG_BUCKET_BOUNDS",
    "BlockingWatchdog",
    "LagHistogram",
    "LoopMetrics",
    "MetricsSupport",
    "MetricsUnavailable",
    "SlowCallback",
    "blocking_ms_from_environment",
    "check_blocking_ms",
    "logger",
    "render_prometheus",
    "watch_blocking",
]


def watch_blocking(loop: Any, blocking_ms: float | None = None) -> BlockingWatchdog | None:
    """Attach a started :class:`BlockingWatchdog` to ``loop``, if a threshold is asked for.

    ``blocking_ms`` None means: what ``SLIPSTREAM_BLOCKING_MS`` says, if
    anything.  Returns the watchdog, or None when there is no threshold.
    """
    if blocking_ms is None:
        blocking_ms = blocking_ms_from_environment()
        if blocking_ms is None:
            return None
    watchdog = BlockingWatchdog(loop, blocking_ms)
    watchdog.start()
    return watchdog
