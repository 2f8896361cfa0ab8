"""Event-loop lag: how late the loop wakes a timer. A blocked loop delays every consumer heartbeat,
fetch and commit at once, so this one gauge explains many symptoms."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any, TextIO

from stream_orch.observability.metrics import Metrics


async def monitor_event_loop(metrics: Metrics, interval_s: float = 0.5) -> None:
    """Runs until cancelled, setting ``stream_orch_event_loop_lag_seconds`` to the last sleep overshoot."""
    gauge = metrics.event_loop_lag
    while True:
        started = time.perf_counter()
        await asyncio.sleep(interval_s)
        gauge.set(max(0.0, time.perf_counter() - started - interval_s))


def dump_tasks(file: TextIO | None = None) -> int:
    """Print every asyncio task with its await chain (the worker does this on SIGUSR1): a worker
    that is alive but makes no progress is waiting on something, and this shows on what."""
    out = file or sys.stderr
    tasks = asyncio.all_tasks()
    print(f"--- {len(tasks)} asyncio tasks ---", file=out)
    for task in sorted(tasks, key=lambda t: t.get_name()):
        print(f"task {task.get_name()}:", file=out)
        awaited: Any = task.get_coro()
        while awaited is not None:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is None:
                print(f"    waiting on {awaited!r}"[:300], file=out)
                break
            print(f"    {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}", file=out)
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    out.flush()
    return len(tasks)
