"""Turns what a node did in one batch into metrics and health, once per batch."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from stream_orch.observability.health import HealthState
from stream_orch.observability.metrics import Metrics

if TYPE_CHECKING:
    from stream_orch.runtime.node import BatchStats, NodeRunner


class NodeObserver:
    def __init__(self, metrics: Metrics, health: HealthState) -> None:
        self.metrics = metrics
        self.health = health

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
        self.health.progress(node)

    def rebalanced(self, runner: NodeRunner) -> None:
        self.metrics.rebalanced(runner.name, len(runner.assigned))
        for table in runner.local_tables:
            self.metrics.table_size(runner.name, table.name, len(table))
