"""Turns what a node did into metrics and health, once per batch; :class:`NullObserver` when a
node runs without them (tests, tools), so the node never checks for a missing observer."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aiokafka import TopicPartition

from stream_orch.audit.events import NOBODY, NODE_RESTART
from stream_orch.audit.log import Auditor, NullAuditLog
from stream_orch.observability.health import HealthState
from stream_orch.observability.lag import LagCollector
from stream_orch.observability.metrics import Metrics
from stream_orch.transport.consumer_view import last_stable_offsets

if TYPE_CHECKING:
    from stream_orch.runtime.batch import BatchStats
    from stream_orch.runtime.node import NodeRunner


class NullObserver:
    """Observes nothing."""

    def watch(self, runner: NodeRunner) -> None: ...

    def batch_done(self, runner: NodeRunner, stats: BatchStats) -> None: ...

    def flushed(self, runner: NodeRunner, seconds: float) -> None: ...

    def restarted(self, runner: NodeRunner, error: BaseException) -> None: ...

    def committed(self, runner: NodeRunner, offsets: dict[TopicPartition, int], seconds: float) -> None: ...

    def recovering(self, runner: NodeRunner, active: bool) -> None: ...

    def restoring(self, runner: NodeRunner, table: str, restored: int, remaining: int) -> None: ...

    def rebalanced(self, runner: NodeRunner, assigned: int) -> None: ...

    def sink_request(self, runner: NodeRunner, target: str, status_class: str, seconds: float) -> None: ...

    def sink_state(self, runner: NodeRunner, target: str, up: bool, reason: str) -> None: ...


class NodeObserver(NullObserver):
    def __init__(
        self,
        metrics: Metrics,
        health: HealthState,
        lag: LagCollector | None = None,
        audit: Auditor | None = None,
    ) -> None:
        self.metrics = metrics
        self.health = health
        self.lag = lag
        self.audit = audit or Auditor(NullAuditLog(), NOBODY)
        self._runners: list[NodeRunner] = []

    def watch(self, runner: NodeRunner) -> None:
        self._runners.append(runner)
        self.metrics.node_restarted(runner.name, 0)

    def batch_done(self, runner: NodeRunner, stats: BatchStats) -> None:
        node = runner.name
        m = self.metrics
        m.batch_done(node, runner.node.input, stats.n_in, stats.outputs, stats.dropped, stats.processing_s)
        if stats.timestamps_ms and stats.outputs:
            m.e2e_from_timestamps(node, stats.timestamps_ms, time.time())
        m.batch_phases(node, stats.phases)
        for error_class, n in stats.errors.items():
            m.error(node, error_class, n)
        for tier, n in stats.retried.items():
            m.retried(node, tier, n)
        for (target, outcome), n in stats.sinks.items():
            m.sink_records(node, target, outcome, n)
        for (reason, step), n in stats.dead_lettered.items():
            m.dead_letter(node, reason, n, step)
        for model, seconds in stats.timings:
            m.model_scored(runner.spec.topology, node, model, seconds)
        for table in runner.local_tables:  # sizes change with every batch, not only on rebalance
            m.table_size(node, table.name, len(table))
        self.health.progress(node)

    def flushed(self, runner: NodeRunner, seconds: float) -> None:
        self.metrics.produced(runner.name, seconds)

    def restarted(self, runner: NodeRunner, error: BaseException) -> None:
        self.metrics.node_restarted(runner.name)
        # the class only: an exception's message may quote a record
        self.audit.post(NODE_RESTART, node=runner.name, restarts=runner.restarts, error=type(error).__name__)

    def committed(self, runner: NodeRunner, offsets: dict[TopicPartition, int], seconds: float) -> None:
        self.metrics.committed(runner.name, seconds)
        if self.lag is not None:
            ends = last_stable_offsets(runner.consumer, offsets)
            self.lag.record_commit(runner.group, offsets, ends)

    def recovering(self, runner: NodeRunner, active: bool) -> None:
        for table in runner.local_tables:
            self.metrics.set_recovering(runner.name, table.name, active)
        ready = not active and all(r.ready and not r.recovering for r in self._runners)
        self.health.set_ready(ready, "running" if ready else f"node {runner.name} is restoring its tables")

    def restoring(self, runner: NodeRunner, table: str, restored: int, remaining: int) -> None:
        self.metrics.restore_progress(runner.name, table, restored, remaining)

    def sink_request(self, runner: NodeRunner, target: str, status_class: str, seconds: float) -> None:
        self.metrics.sink_request(runner.name, target, status_class, seconds)

    def sink_state(self, runner: NodeRunner, target: str, up: bool, reason: str) -> None:
        self.health.set_target(f"{runner.name}/{target}", up, reason)

    def rebalanced(self, runner: NodeRunner, assigned: int) -> None:
        """``assigned``: the partitions the group just gave the node (``runner.assigned`` changes
        only once they are taken over)."""
        self.metrics.rebalanced(runner.name, assigned)
        for table in runner.local_tables:
            self.metrics.table_size(runner.name, table.name, len(table))
