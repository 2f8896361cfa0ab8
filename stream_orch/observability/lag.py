"""Consumer lag of any consumer group, in records and in seconds, exact from record timestamps.

* records: log end offset (high watermark, what ``kafka-consumer-groups --describe`` uses) minus
  the committed offset;
* seconds: now minus the timestamp of the oldest record not yet processed, i.e. the first record
  at or after the committed offset, read with a group-less consumer (seek + fetch of one record).
  0 when caught up. Unlike interpolation from offset/time tables, this is right on idle and
  low-volume topics too.

Timestamps are cached per (partition, committed offset): while a group is stuck, re-polling costs
one ListOffsets and one OffsetFetch per group and no record fetch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from stream_orch.errors import UserError
from stream_orch.observability.collectors import PartitionLag
from stream_orch.observability.health import HealthState
from stream_orch.observability.metrics import Metrics
from stream_orch.observability.status import Status, StatusEvaluator, worst
from stream_orch.redact import redact_urls
from stream_orch.settings import Settings
from stream_orch.transport import clients

log = logging.getLogger(__name__)

CACHE_SIZE = 10_000  # (partition, offset) timestamp lookups kept


class LagReader:
    """Reads committed offsets, log end offsets and oldest-unprocessed timestamps from the cluster."""

    def __init__(self, settings: Settings, fetch_timeout_s: float = 5.0) -> None:
        self.settings = settings
        self.fetch_timeout_s = fetch_timeout_s
        args = settings.kafka_client_args()
        self._admin = AIOKafkaAdminClient(**args)
        # auto_offset_reset earliest: a committed offset deleted by retention reads the oldest left;
        # read_committed: end offsets are the last stable offsets, so transaction markers are no lag
        self._consumer = clients.reader(args, max_partition_fetch_bytes=64 * 1024)  # one record: all we read
        self._ts_cache: dict[tuple[TopicPartition, int], int] = {}  # (tp, offset) -> timestamp ms

    async def start(self) -> None:
        try:
            await asyncio.wait_for(self._admin.start(), self.settings.request_timeout_s)
            await asyncio.wait_for(self._consumer.start(), self.settings.request_timeout_s)
        except (KafkaError, OSError, TimeoutError) as exc:
            await self.stop()
            raise UserError(
                f"cannot reach Kafka at {redact_urls(self.settings.bootstrap_servers)}: "
                f"{redact_urls(str(exc) or type(exc).__name__)}"
            ) from None

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self._consumer.stop()
        with contextlib.suppress(Exception):
            await self._admin.close()

    async def __aenter__(self) -> LagReader:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def groups(self) -> list[str]:
        """Every consumer group of the cluster that stores offsets in Kafka."""
        listed = await self._admin.list_consumer_groups()
        return sorted({entry[0] for entry in listed})

    async def committed(self, group: str) -> dict[TopicPartition, int]:
        offsets = await self._admin.list_consumer_group_offsets(group)
        return {tp: om.offset for tp, om in offsets.items() if om.offset >= 0}

    async def end_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        tps = list(tps)
        return await self._consumer.end_offsets(tps) if tps else {}

    async def oldest_timestamps(self, wanted: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
        """Timestamp (ms) of the first record at or after each offset; partitions that time out are absent."""
        result: dict[TopicPartition, int] = {}
        missing: dict[TopicPartition, int] = {}
        for tp, offset in wanted.items():
            cached = self._ts_cache.get((tp, offset))
            if cached is not None:
                result[tp] = cached
            else:
                missing[tp] = offset
        if not missing:
            return result
        consumer = self._consumer
        consumer.assign(list(missing))
        for tp, offset in missing.items():
            consumer.seek(tp, offset)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.fetch_timeout_s
        pending = set(missing)
        try:
            while pending and loop.time() < deadline:
                remaining_ms = max(1, int((deadline - loop.time()) * 1000))
                batch = await consumer.getmany(*pending, timeout_ms=min(remaining_ms, 500))
                for tp, records in batch.items():
                    if tp in pending and records:
                        result[tp] = records[0].timestamp
                        self._remember((tp, missing[tp]), records[0].timestamp)
                        pending.discard(tp)
                        consumer.pause(tp)
        finally:
            consumer.pause(*consumer.assignment())  # stop background prefetching
        if pending:
            # Normal under exactly_once: what follows a committed offset may be transaction
            # markers and aborted records only, which a read_committed reader never returns (the
            # lag in records counts them, the lag in seconds has no record to date)
            log.debug("no record found at the committed offset of %s", sorted(map(str, pending)))
        return result

    def _remember(self, key: tuple[TopicPartition, int], timestamp_ms: int) -> None:
        if len(self._ts_cache) >= CACHE_SIZE:  # a group moved on: its old offsets are never asked again
            del self._ts_cache[next(iter(self._ts_cache))]
        self._ts_cache[key] = timestamp_ms

    async def snapshot(
        self, groups: Sequence[str] | None = None, now: float | None = None
    ) -> list[PartitionLag]:
        """Lag of every committed partition of ``groups`` (all groups when None); status left empty."""
        names = list(groups) if groups else await self.groups()
        committed: dict[str, dict[TopicPartition, int]] = {}
        for group in names:
            committed[group] = await self.committed(group)
        all_tps = {tp for offsets in committed.values() for tp in offsets}
        ends = await self.end_offsets(all_tps)
        wanted: dict[TopicPartition, int] = {}
        rows: list[tuple[str, TopicPartition, int, int]] = []
        for group, offsets in committed.items():
            for tp, offset in offsets.items():
                end = ends.get(tp, offset)
                rows.append((group, tp, offset, end))
                if end > offset:
                    # two groups at different offsets of one partition: fetch the older one
                    wanted[tp] = min(offset, wanted.get(tp, offset))
        stamps = await self.oldest_timestamps(wanted)
        now = time.time() if now is None else now
        out: list[PartitionLag] = []
        for group, tp, offset, end in sorted(rows, key=lambda r: (r[0], r[1].topic, r[1].partition)):
            lag = max(0, end - offset)
            if lag == 0:
                seconds = 0.0
            else:
                ts = (
                    stamps.get(tp)
                    if wanted[tp] == offset
                    else (await self.oldest_timestamps({tp: offset})).get(tp)
                )
                seconds = math.nan if ts is None else max(0.0, now - ts / 1000.0)
            out.append(PartitionLag(group, tp.topic, tp.partition, offset, end, lag, seconds))
        return out


class LagCollector:
    """Polls lag on a timer, evaluates status and publishes both to metrics (and health).

    In a worker, pass the worker's own groups and ``node_of_group`` so ``/health`` learns each
    node's lag; the runtime may also report its commits with :meth:`record_commit`, which makes
    the status exact (every commit is an observation, so STALL is visible too).
    """

    def __init__(
        self,
        reader: LagReader,
        metrics: Metrics | None = None,
        *,
        groups: Sequence[str] | None = None,
        interval_s: float = 10.0,
        evaluator: StatusEvaluator | None = None,
        health: HealthState | None = None,
        node_of_group: Mapping[str, str] | None = None,
    ) -> None:
        self.reader = reader
        self.metrics = metrics
        self.groups = list(groups) if groups else None
        self.interval_s = interval_s
        self.evaluator = evaluator or StatusEvaluator()
        self.health = health
        self.node_of_group = dict(node_of_group or {})
        self.last: list[PartitionLag] = []
        self.group_status: dict[str, Status] = {}

    def record_commit(
        self,
        group: str,
        offsets: Mapping[TopicPartition, int],
        highwaters: Mapping[TopicPartition, int],
        timestamp: float | None = None,
    ) -> None:
        """One commit of the worker: ``offsets`` committed, ``highwaters`` from ``consumer.highwater(tp)``."""
        ts = time.time() if timestamp is None else timestamp
        for tp, offset in offsets.items():
            end = highwaters.get(tp)
            lag = max(0, end - offset) if end is not None and end >= 0 else 0
            self.evaluator.observe((group, tp.topic, tp.partition), offset, lag, ts)

    async def poll_once(self, now: float | None = None) -> list[PartitionLag]:
        now = time.time() if now is None else now
        rows = await self.reader.snapshot(self.groups, now)
        evaluated: list[PartitionLag] = []
        for r in rows:
            key = (r.group, r.topic, r.partition)
            self.evaluator.observe_poll(key, r.committed, r.lag_records, now)
            status = self.evaluator.partition_status(key, r.lag_records, now)
            evaluated.append(
                PartitionLag(
                    r.group, r.topic, r.partition, r.committed, r.end, r.lag_records, r.lag_seconds, status
                )
            )
        self.evaluator.retain((r.group, r.topic, r.partition) for r in rows)
        by_group: dict[str, list[Status | None]] = {}
        for r in evaluated:
            by_group.setdefault(r.group, []).append(r.status)
        self.group_status = {g: s for g, st in by_group.items() if (s := worst(st)) is not None}
        self.last = evaluated
        if self.metrics is not None:
            self.metrics.set_lag(evaluated, self.group_status)
        if self.health is not None:
            for group, node in self.node_of_group.items():
                self.health.set_lag(node, sum(r.lag_records for r in evaluated if r.group == group))
        return evaluated

    async def run(self) -> None:
        """Polls until cancelled; a failed poll is logged and retried at the next tick."""
        while True:
            started = time.monotonic()
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the collector must never take the worker down
                log.warning("lag poll failed: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))
