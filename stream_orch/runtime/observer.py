"""Turns what a node did in one batch into metrics and health, once per batch."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aiokafka import TopicPartition

from stream_orch.observability.health import HealthState
from stream_orch.observability.lag import LagCollector
from stream_orch.observability.metrics import Metrics

if TYPE_CHECKING:
    from stream_orch.runtime.node import BatchStats, NodeRunner


class NodeObserver:
    def __init__(self, metrics: Metrics, health: HealthState, lag: LagCollector | None = None) -> None:
        self.metrics = metrics
        self.health = health
        self.lag = lag
        self._runners: list[NodeRunner] = []

    def watch(self, runner: NodeRunner) -> None:
        self._runners.append(runner)
        self.metrics.node_restarted(runner.name, 0)

    def batch_done(self, runner: NodeRunner, stats: BatchStats, seconds: float) -> None:
        node = runner.name
        m = self.metrics
        m.batch_done(node, runner.node.input, stats.n_in, stats.outputs, stats.dropped, seconds)
        if stats.timestamps_ms and stats.outputs:
            m.e2e_from_timestamps(node, stats.timestamps_ms, time.time())
        for error_class, n in stats.errors.items():
            m.error(node, error_class, n)
        for tier, n in stats.retried.items():
            m.retried(node, tier, n)
        for reason, n in stats.dead_lettered.items():
            m.dead_letter(node, reason, n)
        for table in runner.local_tables:  # sizes change with every batch, not only on rebalance
            m.table_size(node, table.name, len(table))
        self.health.progress(node)

    def flushed(self, runner: NodeRunner, seconds: float) -> None:
        self.metrics.produced(runner.name, seconds)

    def restarted(self, runner: NodeRunner) -> None:
        self.metrics.node_restarted(runner.name)

    def committed(
        self,
        runner: NodeRunner,
        offsets: dict[TopicPartition, int],
        highwaters: dict[TopicPartition, int | None],
        seconds: float,
    ) -> None:
        self.metrics.committed(runner.name, seconds)
        if self.lag is not None:
            known = {tp: hw for tp, hw in highwaters.items() if hw is not None}
            self.lag.record_commit(runner.group, offsets, known)

    def recovering(self, runner: NodeRunner, active: bool) -> None:
        for table in runner.local_tables:
            self.metrics.set_recovering(runner.name, table.name, active)
        ready = not active and all(not r.recovering for r in self.runners())
        self.health.set_ready(ready, "running" if ready else f"node {runner.name} is restoring its tables")

    def restoring(self, runner: NodeRunner, table: str, restored: int, remaining: int) -> None:
        self.metrics.restore_progress(runner.name, table, restored, remaining)

    def runners(self) -> list[NodeRunner]:
        return self._runners

    def rebalanced(self, runner: NodeRunner) -> None:
        self.metrics.rebalanced(runner.name, len(runner.assigned))
        for table in runner.local_tables:
            self.metrics.table_size(runner.name, table.name, len(table))
