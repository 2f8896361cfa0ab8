"""Metric families computed at scrape time from what the worker already keeps (a lag snapshot,
the global tables' followers, the produce-retry log filter), registered by :class:`Metrics`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from stream_orch.observability.status import Status
from stream_orch.transport.produce_retries import QUIET_RETRIES

PREFIX = "stream_orch_"


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """One row of a lag snapshot: what ``stream-orch lag`` prints and the exporter exports."""

    group: str
    topic: str
    partition: int
    committed: int
    end: int
    lag_records: int
    lag_seconds: float
    status: Status | None = None  # None while the evaluator has too few observations


class LagFamilies(Collector):
    """Exports the latest lag snapshot; series of vanished groups/partitions disappear with it.

    A snapshot-backed collector (rather than Gauges) is what keeps the exporter bounded: nothing
    stays behind after a group is deleted or a partition is reassigned away.
    """

    def __init__(self, per_partition: bool) -> None:
        self.per_partition = per_partition
        self._rows: list[PartitionLag] = []
        self._group_status: dict[str, Status] = {}

    def update(self, rows: Sequence[PartitionLag], group_status: Mapping[str, Status]) -> None:
        self._rows = list(rows)
        self._group_status = dict(group_status)

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        yield from self._families(self._rows, self._group_status)

    def _families(
        self, rows: Sequence[PartitionLag] = (), group_status: Mapping[str, Status] | None = None
    ) -> Iterator[Metric]:
        labels = ["group", "topic", "partition"] if self.per_partition else ["group", "topic"]
        records = GaugeMetricFamily(
            PREFIX + "consumer_lag_records",
            "Log end offset minus committed offset (records).",
            labels=labels,
        )
        seconds = GaugeMetricFamily(
            PREFIX + "consumer_lag_seconds",
            "Now minus the timestamp of the oldest unprocessed record; 0 when caught up.",
            labels=labels,
        )
        committed = GaugeMetricFamily(
            PREFIX + "consumer_committed_offset", "Committed offset of the group.", labels=labels
        )
        end = GaugeMetricFamily(PREFIX + "consumer_log_end_offset", "Log end offset.", labels=labels)
        pstatus = GaugeMetricFamily(
            PREFIX + "partition_status",
            "Burrow-style status: 0 ok, 1 warn, 2 stop, 3 stall, 4 rewind.",
            labels=labels,
        )
        gstatus = GaugeMetricFamily(
            PREFIX + "consumer_group_status",
            "Worst partition status of the group: 0 ok, 1 warn, 2 stop, 3 stall, 4 rewind.",
            labels=["group"],
        )
        if self.per_partition:
            for r in rows:
                lv = [r.group, r.topic, str(r.partition)]
                records.add_metric(lv, r.lag_records)
                seconds.add_metric(lv, r.lag_seconds)
                committed.add_metric(lv, r.committed)
                end.add_metric(lv, r.end)
                if r.status is not None:
                    pstatus.add_metric(lv, int(r.status))
        else:  # per topic: lag summed, seconds and status the worst partition's
            agg: dict[tuple[str, str], list] = {}
            for r in rows:
                a = agg.setdefault((r.group, r.topic), [0, 0.0, 0, 0, None])
                a[0] += r.lag_records
                a[1] = max(a[1], r.lag_seconds)
                a[2] += r.committed
                a[3] += r.end
                if r.status is not None:
                    a[4] = r.status if a[4] is None else max(a[4], r.status)
            for (group, topic), (lag, secs, comm, e, st) in agg.items():
                lv = [group, topic]
                records.add_metric(lv, lag)
                seconds.add_metric(lv, secs)
                committed.add_metric(lv, comm)
                end.add_metric(lv, e)
                if st is not None:
                    pstatus.add_metric(lv, int(st))
        for group, st in (group_status or {}).items():
            gstatus.add_metric([group], int(st))
        yield from (records, seconds, committed, end, pstatus, gstatus)


class FollowedTable(Protocol):
    """What a global table tells about its follower (see stream_orch.state.global_table)."""

    name: str
    restarts: int
    last_applied_s: float | None
    decode_errors: int
    invalid_rows: int

    def lag(self) -> int: ...


class GlobalTableFamilies(Collector):
    """Read at scrape time from the tables themselves: no follower updates a metric per record."""

    def __init__(self) -> None:
        self.tables: list[FollowedTable] = []

    def describe(self) -> Iterator[Metric]:
        yield from self._families([])

    def collect(self) -> Iterator[Metric]:
        yield from self._families(self.tables)

    def _families(self, tables: Sequence[FollowedTable]) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            PREFIX + "global_table_lag_records",
            "Records of a global table's topic its follower has not applied yet.",
            labels=["table"],
        )
        applied = GaugeMetricFamily(
            PREFIX + "global_table_last_applied_timestamp_seconds",
            "Unix time at which the global table last applied a record of its topic.",
            labels=["table"],
        )
        restarts = CounterMetricFamily(
            PREFIX + "global_table_follower_restarts",
            "Times a global table's follower failed and was restarted.",
            labels=["table"],
        )
        skipped = CounterMetricFamily(
            PREFIX + "global_table_skipped_rows",
            "Rows of a global table's topic skipped: `undecodable` bytes, or `invalid` against the "
            "topic's schema (the key keeps its previous row).",
            labels=["table", "reason"],
        )
        for table in tables:
            lag.add_metric([table.name], table.lag())
            if table.last_applied_s is not None:
                applied.add_metric([table.name], table.last_applied_s)
            restarts.add_metric([table.name], table.restarts)
            skipped.add_metric([table.name, "undecodable"], table.decode_errors)
            skipped.add_metric([table.name, "invalid"], table.invalid_rows)
        yield from (lag, applied, restarts, skipped)


class ProduceRetryFamilies(Collector):
    """aiokafka's produce retries its warnings no longer show (transport.produce_retries), read
    at scrape time from the process's one log filter."""

    def describe(self) -> Iterator[Metric]:
        yield from self._families({})

    def collect(self) -> Iterator[Metric]:
        yield from self._families(QUIET_RETRIES.retries)

    def _families(self, retries: Mapping[str, int]) -> Iterator[Metric]:
        family = CounterMetricFamily(
            PREFIX + "produce_retries",
            "Produce requests aiokafka retried after a transient broker error, by error "
            "(NotEnoughReplicasError: mostly KIP-890 transaction verification); this process.",
            labels=["error"],
        )
        for error, n in sorted(retries.items()):
            family.add_metric([error], n)
        yield family
