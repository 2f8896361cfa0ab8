"""Event-loop lag: how late the loop wakes a timer. A blocked loop delays every consumer heartbeat,
fetch and commit at once, so this one gauge explains many symptoms."""

from __future__ import annotations

import asyncio
import time

from stream_orch.observability.metrics import Metrics


async def monitor_event_loop(metrics: Metrics, interval_s: float = 0.5) -> None:
    """Runs until cancelled, setting ``stream_orch_event_loop_lag_seconds`` to the last sleep overshoot."""
    gauge = metrics.event_loop_lag
    while True:
        started = time.perf_counter()
        await asyncio.sleep(interval_s)
        gauge.set(max(0.0, time.perf_counter() - started - interval_s))
