"""Every Prometheus metric stream-orch exports is registered in this module; the families
computed at scrape time (lag, global tables, produce retries, schedules) are collectors of their
own, in ``collectors.py`` and ``schedule_metrics.py``.

Conventions (checked by ``tests/unit/test_obs_metrics.py``): names start with ``stream_orch_``,
values are in base units (seconds, records), counters end in ``_total``, and every label takes
values from a bounded set (nodes, routes and topics of the topology; error classes and drop
reasons capped per node; partitions only when ``per_partition`` is on).

Each :class:`Metrics` owns its own :class:`CollectorRegistry`, so tests and several workers in one
process never collide. The hot path updates metrics once per *batch* through the ``batch_done``
family of methods, never once per record.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter as _Tally
from collections.abc import Iterable, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.metrics import disable_created_metrics

from stream_orch import __version__
from stream_orch.observability.collectors import (
    FollowedTable,
    GlobalTableFamilies,
    LagFamilies,
    PartitionLag,
    ProduceRetryFamilies,
)
from stream_orch.observability.read_order_metrics import ReadOrderCollector
from stream_orch.observability.schedule_metrics import ScheduleCollector
from stream_orch.observability.status import Status

# `_created` series double the series count of every counter and histogram and nobody graphs them.
disable_created_metrics()

PREFIX = "stream_orch_"
OTHER = "other"  # label value once a node has used up its distinct error classes / drop reasons
MAX_LABEL_VALUES = 50  # per node and label: bounds cardinality even for exotic exception classes

_CODE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")


def label_code(reason: str) -> str:
    """The code of a reason, for a label: the part before the first ``:`` when it is a short
    identifier (``invalid_field: amount must be a number (got 'x')`` → ``invalid_field``), else
    ``other``. Reasons carry record values after the colon; labels must never (one time series
    per distinct bad value would grow without bound). The full reason goes to the DLQ headers."""
    code = reason.split(":", 1)[0].strip()
    return code if _CODE.fullmatch(code) else OTHER


LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# End to end includes consumer lag, so it reaches into minutes.
E2E_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)


class Metrics:
    """All metrics of one worker (or one lag exporter), in a registry of its own.

    ``per_partition=False`` drops the partition label everywhere (lag is then aggregated per
    topic) for clusters with many partitions.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, per_partition: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.per_partition = per_partition
        r = self.registry
        p = PREFIX
        self.build = Info(p + "build", "stream-orch version.", registry=r)
        self.build.info({"version": __version__})

        self.reloads = Counter(
            p + "reloads_total",
            "Topology reloads by result: applied, refused, unchanged (the running version already).",
            ["result"],
            registry=r,
        )
        self.events_in = Counter(
            p + "events_in_total", "Records consumed by a node.", ["node", "topic"], registry=r
        )
        self.events_out = Counter(
            p + "events_out_total",
            "Records produced by a node, per route and topic.",
            ["node", "topic", "route"],
            registry=r,
        )
        self.events_dropped = Counter(
            p + "events_dropped_total",
            "Records a node dropped on purpose (filtered, duplicate, ...).",
            ["node", "reason"],
            registry=r,
        )
        self.errors = Counter(
            p + "errors_total", "Processing errors by exception class.", ["node", "error_class"], registry=r
        )
        self.retries = Counter(
            p + "retries_total", "Records sent to a retry tier.", ["node", "tier"], registry=r
        )
        self.dead_lettered = Counter(
            p + "dead_lettered_total",
            "Records sent to the DLQ, by reason code and the step (or decode, route, deliver) that failed.",
            ["node", "reason", "step"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            p + "batch_processing_seconds",
            "Time a node spends on one batch: decoding, steps and routing (fetch and acks excluded).",
            ["node"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_records = Histogram(
            p + "batch_size_records",
            "Records per processed batch.",
            ["node"],
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000),
            registry=r,
        )
        # where a batch's time goes (the phases: stream_orch.runtime.batch.PHASES), once per batch
        self.batch_phase = Histogram(
            p + "batch_phase_seconds",
            "Time of one batch in one phase: fetch_wait, batch_fill, steps, handover_wait, "
            "produce_acks, changelog_acks, txn_commit.",
            ["node", "phase"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.e2e_latency = Histogram(
            p + "end_to_end_latency_seconds",
            "Record timestamp to output acknowledged by Kafka.",
            ["node"],
            buckets=E2E_BUCKETS,
            registry=r,
        )
        self.produce_latency = Histogram(
            p + "producer_send_seconds",
            "Send to broker acknowledgement of one produced batch.",
            ["node"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_latency = Histogram(
            p + "commit_seconds",
            "Duration of one offset commit.",
            ["node"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_seconds = Histogram(
            p + "model_seconds",
            "Time a model step takes for one batch: gathering the features, the model call, the results.",
            ["topology", "node", "model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        # targets outside Kafka (http, postgres): labelled by the target's name, never its URL
        self.sink_records_total = Counter(
            p + "sink_records_total",
            "Records a node handed an external target, by outcome (delivered, retried, rejected).",
            ["node", "target", "outcome"],
            registry=r,
        )
        self.sink_request_latency = Histogram(
            p + "sink_request_seconds",
            "One request to an external target, by status class (2xx, 4xx, 5xx, timeout, connection).",
            ["node", "target", "status_class"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.node_restarts = Counter(
            p + "node_restarts_total",
            "Times a node started over from its committed offsets after a failed batch.",
            ["node"],
            registry=r,
        )
        self.rebalances = Counter(
            p + "rebalances_total", "Partition assignments received.", ["node"], registry=r
        )
        self.audit_write_failures = Counter(
            p + "audit_write_failures_total",
            "Audit records (start, stop, node restart) this worker could not write; it kept running.",
            registry=r,
        )
        self.assigned_partitions = Gauge(
            p + "assigned_partitions", "Partitions currently assigned to the node.", ["node"], registry=r
        )
        self.table_entries = Gauge(
            p + "table_entries", "Keys held in a table (this worker).", ["node", "table"], registry=r
        )
        self.table_restored = Counter(
            p + "table_restored_records_total",
            "Changelog records replayed into a table.",
            ["node", "table"],
            registry=r,
        )
        self.table_restore_remaining = Gauge(
            p + "table_restore_remaining_records",
            "Changelog records still to replay.",
            ["node", "table"],
            registry=r,
        )
        self.table_recovering = Gauge(
            p + "table_recovering",
            "1 while a table is restoring from its changelog.",
            ["node", "table"],
            registry=r,
        )
        self.event_loop_lag = Gauge(
            p + "event_loop_lag_seconds",
            "How late the asyncio loop woke up a timer (last sample).",
            registry=r,
        )
        self.lag = LagFamilies(per_partition)
        r.register(self.lag)
        self._global_tables = GlobalTableFamilies()
        r.register(self._global_tables)
        r.register(ProduceRetryFamilies())
        self.schedules = ScheduleCollector()  # scheduled nodes' tick steps, by node (the worker)
        r.register(self.schedules)
        self.read_order = ReadOrderCollector()  # join nodes' read orders, by node (the worker)
        r.register(self.read_order)
        self._seen: dict[tuple[str, str], set[str]] = {}

    # -- label bounding -------------------------------------------------------------------------

    def _bounded(self, node: str, label: str, value: str) -> str:
        """A reason's code (:func:`label_code`), and a cap on distinct codes per node and label
        (exception class names are open-ended too); the rest are counted as ``other``."""
        value = label_code(value)
        seen = self._seen.setdefault((node, label), set())
        if value in seen:
            return value
        if len(seen) >= MAX_LABEL_VALUES:
            return OTHER
        seen.add(value)
        return value

    # -- hot path: once per batch ---------------------------------------------------------------

    def batch_done(
        self,
        node: str,
        topic: str,
        n_in: int,
        outs: Mapping[tuple[str, str], int] | None = None,
        dropped: Mapping[str, int] | None = None,
        seconds: float | None = None,
        e2e_samples: Sequence[float] = (),
    ) -> None:
        """Records one processed batch: ``outs`` maps (route, topic) to records produced."""
        if n_in:
            self.events_in.labels(node, topic).inc(n_in)
            self.batch_records.labels(node).observe(n_in)
        for (route, out_topic), n in (outs or {}).items():
            if n:
                self.events_out.labels(node, out_topic, route).inc(n)
        for reason, n in (dropped or {}).items():
            if n:
                self.events_dropped.labels(node, self._bounded(node, "reason", reason)).inc(n)
        if seconds is not None:
            self.batch_seconds.labels(node).observe(seconds)
        if e2e_samples:
            observe_many(self.e2e_latency.labels(node), e2e_samples)

    def batch_phases(self, node: str, phases: Iterable[tuple[str, float]]) -> None:
        """One batch's (phase, seconds); the phases are the engine's own names (bounded)."""
        for phase, seconds in phases:
            self.batch_phase.labels(node, phase).observe(seconds)

    def e2e_from_timestamps(self, node: str, timestamps_ms: Iterable[int], acked_at_s: float) -> None:
        """End-to-end latency of a batch whose outputs Kafka acknowledged at ``acked_at_s`` (epoch s)."""
        observe_many(
            self.e2e_latency.labels(node), [max(0.0, acked_at_s - ts / 1000.0) for ts in timestamps_ms]
        )

    def model_scored(self, topology: str, node: str, model: str, seconds: float) -> None:
        """One model call on a batch (the model's name is the topology's: a bounded set)."""
        self.model_seconds.labels(topology, node, model).observe(seconds)

    def sink_records(self, node: str, target: str, outcome: str, n: int) -> None:
        self.sink_records_total.labels(node, target, outcome).inc(n)

    def sink_request(self, node: str, target: str, status_class: str, seconds: float) -> None:
        self.sink_request_latency.labels(node, target, status_class).observe(seconds)

    def node_restarted(self, node: str, n: int = 1) -> None:
        """``n`` 0 makes the series exist (at 0) for a node that never restarted, for alerting."""
        self.node_restarts.labels(node).inc(n)

    def audit_write_failed(self) -> None:
        self.audit_write_failures.inc()

    def error(self, node: str, error_class: str, n: int = 1) -> None:
        self.errors.labels(node, self._bounded(node, "error_class", error_class)).inc(n)

    def retried(self, node: str, tier: int | str, n: int = 1) -> None:
        self.retries.labels(node, str(tier)).inc(n)

    def dead_letter(self, node: str, reason: str, n: int = 1, step: str = "") -> None:
        """``step``: a label of :func:`~stream_orch.topology.naming.step_labels` or a stage
        (bounded by the topology, as nodes are)."""
        self.dead_lettered.labels(node, self._bounded(node, "dlq_reason", reason), step).inc(n)

    def produced(self, node: str, seconds: float) -> None:
        self.produce_latency.labels(node).observe(seconds)

    def committed(self, node: str, seconds: float) -> None:
        self.commit_latency.labels(node).observe(seconds)

    # -- group membership and tables -------------------------------------------------------------

    def rebalanced(self, node: str, assigned: int) -> None:
        """Call from the rebalance listener's ``on_partitions_assigned``."""
        self.rebalances.labels(node).inc()
        self.assigned_partitions.labels(node).set(assigned)

    def table_size(self, node: str, table: str, entries: int) -> None:
        self.table_entries.labels(node, table).set(entries)

    def restore_progress(self, node: str, table: str, restored: int, remaining: int) -> None:
        """``restored`` records since the last call; ``remaining`` to the changelog's end offset."""
        self.table_restored.labels(node, table).inc(restored)  # 0 too: the series shows a restore ran
        self.table_restore_remaining.labels(node, table).set(remaining)

    def set_recovering(self, node: str, table: str, recovering: bool) -> None:
        self.table_recovering.labels(node, table).set(1 if recovering else 0)
        if not recovering:
            self.table_restore_remaining.labels(node, table).set(0)

    # -- lag (fed by observability.lag.LagCollector) ---------------------------------------------

    def set_lag(self, rows: Sequence[PartitionLag], group_status: Mapping[str, Status]) -> None:
        self.lag.update(rows, group_status)

    def watch_global_tables(self, tables: Sequence[FollowedTable]) -> None:
        self._global_tables.tables = list(tables)

    # -- introspection ---------------------------------------------------------------------------

    def metric_names(self) -> set[str]:
        """Every series name this registry can expose (counters with ``_total``, info with ``_info``)."""
        names: set[str] = set()
        for family in self.registry.collect():
            if family.type == "counter":
                names.add(family.name + "_total")
            elif family.type == "info":
                names.add(family.name + "_info")
            else:
                names.add(family.name)
        return names

    def families(self) -> list[tuple[str, str]]:
        """(name, type) of every metric family, for the naming-convention tests."""
        return [(f.name, f.type) for f in self.registry.collect()]


def observe_many(histogram: Histogram, samples: Sequence[float]) -> None:
    """Observes a whole batch of samples with one lock per touched bucket instead of per sample.

    Uses the client's bucket layout (non-cumulative per-bucket values, cumulated at collect time);
    falls back to plain ``observe`` if that private layout ever changes.
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:
        for s in samples:
            histogram.observe(s)
        return
    tally = _Tally(bisect.bisect_left(bounds, s) for s in samples)
    for index, n in tally.items():
        buckets[index].inc(n)
    total.inc(sum(samples))
