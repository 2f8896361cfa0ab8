"""Liveness and readiness of a worker, as flags the runtime sets and ``/health`` / ``/ready`` read.

Liveness fails for the ways a stream processor dies while its process lives on: an agent task
ended (crashed, was cancelled, or simply returned), a node has lag and has not made progress
for ``stall_seconds``, or a feed the nodes read (a global table's follower) has not been
current for longer than its bound. Readiness is whatever the runtime last said with ``set_ready``
(partitions assigned and tables recovered).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _NodeProgress:
    last_progress: float
    lag: int = 0


class HealthState:
    """Shared by the runtime (writer) and the HTTP server (reader); all on one event loop."""

    def __init__(self, stall_seconds: float = 120.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_seconds = stall_seconds
        self._clock = clock
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._dead: dict[str, str] = {}
        self._nodes: dict[str, _NodeProgress] = {}
        self._feeds: dict[str, tuple[Callable[[], float], float]] = {}
        self._targets_down: dict[str, tuple[float, str]] = {}  # target -> (down since, why)
        self._ready = False
        self._ready_reason = "starting"

    # -- agent tasks -----------------------------------------------------------------------------

    def register_task(self, name: str, task: asyncio.Task[Any]) -> None:
        """Watches an agent task: if it ends before :meth:`unregister_task`, the worker is not live."""
        self._tasks[name] = task
        self._dead.pop(name, None)
        task.add_done_callback(lambda t, name=name: self._task_done(name, t))

    def unregister_task(self, name: str) -> None:
        """Call before stopping a task on purpose (shutdown, revocation), so its end is not a death."""
        self._tasks.pop(name, None)
        self._dead.pop(name, None)

    def _task_done(self, name: str, task: asyncio.Task[Any]) -> None:
        if self._tasks.get(name) is not task:
            return  # unregistered or replaced: an intended stop
        if task.cancelled():
            reason = "cancelled"
        elif (exc := task.exception()) is not None:
            reason = f"crashed: {type(exc).__name__}: {exc}"
        else:
            reason = "returned"
        self._dead[name] = reason
        log.error("agent task %s %s", name, reason, extra={"node": name})

    # -- progress and lag ------------------------------------------------------------------------

    def progress(self, node: str) -> None:
        """Call once per processed (committed) batch of ``node``."""
        state = self._nodes.get(node)
        if state is None:
            self._nodes[node] = _NodeProgress(self._clock())
        else:
            state.last_progress = self._clock()

    def set_lag(self, node: str, records: int) -> None:
        """Current lag of ``node``'s consumer group in records (from the lag collector).

        An idle node makes no progress either; the stall clock starts when lag appears, so a node
        that was idle for an hour is not called stuck the moment a record arrives."""
        state = self._nodes.setdefault(node, _NodeProgress(self._clock()))
        if records > 0 and state.lag == 0:
            state.last_progress = max(state.last_progress, self._clock())
        state.lag = records

    # -- feeds -----------------------------------------------------------------------------------

    def watch_feed(self, name: str, fresh_at: Callable[[], float], stale_seconds: float) -> None:
        """``fresh_at()`` is the (monotonic) time ``name`` was last known current; liveness fails
        once that is more than ``stale_seconds`` ago."""
        self._feeds[name] = (fresh_at, stale_seconds)

    # -- delivery targets outside Kafka ----------------------------------------------------------

    def set_target(self, name: str, up: bool, reason: str = "") -> None:
        """A route target outside Kafka (``<node>/<target>``) is reachable, or not and why.

        A target that is down keeps the worker live (status ``degraded``, HTTP 200): restarting
        the worker does not bring a database back, and its other nodes go on meanwhile. The
        node waiting for it stalls, which the stall rule reports once it lasts."""
        if up:
            self._targets_down.pop(name, None)
        else:
            since = self._targets_down.get(name, (self._clock(), ""))[0]
            self._targets_down[name] = (since, reason)

    # -- readiness -------------------------------------------------------------------------------

    def set_ready(self, ready: bool, reason: str = "") -> None:
        """Ready = partitions assigned and tables recovered; ``reason`` says why not (or what)."""
        self._ready = ready
        self._ready_reason = reason or ("ready" if ready else "not ready")

    # -- evaluation ------------------------------------------------------------------------------

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """(live, body): body names every dead task and every stalled node."""
        problems: list[str] = [f"agent {name} {reason}" for name, reason in sorted(self._dead.items())]
        now = self._clock()
        stalled: dict[str, dict[str, float | int]] = {}
        for node, st in sorted(self._nodes.items()):
            idle = now - st.last_progress
            if st.lag > 0 and idle > self.stall_seconds:
                stalled[node] = {"lag_records": st.lag, "seconds_without_progress": round(idle, 3)}
                problems.append(f"node {node} has lag {st.lag} and no progress for {idle:.0f}s")
        stale: dict[str, float] = {}
        for name, (fresh_at, bound) in sorted(self._feeds.items()):
            age = now - fresh_at()
            if age > bound:
                stale[name] = round(age, 3)
                problems.append(f"{name} is stale: not current for {age:.0f}s")
        body: dict[str, Any] = {
            "status": "ok" if not problems else "fail",
            "reasons": problems,
            "tasks": {name: self._dead.get(name, "running") for name in sorted(self._tasks)},
        }
        if stalled:
            body["stalled"] = stalled
        if stale:
            body["stale"] = stale
        if self._targets_down:
            body["targets_down"] = {
                name: {"reason": why, "seconds_down": round(now - since, 3)}
                for name, (since, why) in sorted(self._targets_down.items())
            }
            if not problems:
                body["status"] = "degraded"
        return not problems, body

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        return self._ready, {"status": "ready" if self._ready else "not ready", "reason": self._ready_reason}
