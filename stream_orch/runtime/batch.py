"""One batch in a node: its events, what steps reported about them, and its figures."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from stream_orch.codecs import DecodeError
from stream_orch.reliability import headers as H
from stream_orch.steps.base import PASSED_OVER, Event, Table


@dataclass
class Failure:
    event: Event
    reason: str
    error: BaseException | None
    retriable: bool


@dataclass
class BatchStats:
    """What one batch did, handed to metrics once per batch."""

    n_in: int = 0
    outputs: Counter[tuple[str, str]] = field(default_factory=Counter)  # (route, topic) -> n
    dropped: Counter[str] = field(default_factory=Counter)
    dead_lettered: Counter[str] = field(default_factory=Counter)
    retried: Counter[int] = field(default_factory=Counter)  # tier -> n
    errors: Counter[str] = field(default_factory=Counter)  # error class -> n
    timestamps_ms: list[int] = field(default_factory=list)
    processing_s: float = 0.0  # decode, steps and routing: the node's own work


class NodeContext:
    """The StepContext the executor hands to steps; collects one batch's failures and drops."""

    def __init__(self, topology: str, node: str, constants: dict[str, Any], tables: dict[str, Table]) -> None:
        self.topology = topology
        self.node = node
        self.constants = constants
        self._tables = tables
        self.failures: list[Failure] = []
        self.dropped: Counter[str] = Counter()
        # the batch's records dropped as filtered, duplicate... (see PASSED_OVER), in drop order
        self.passed_over: list[Event] = []

    def table(self, name: str) -> Table:
        return self._tables[name]

    def reject(self, event: Event, reason: str, error: BaseException | None = None) -> None:
        self.failures.append(Failure(event, reason, error, retriable=False))

    def retry(self, event: Event, reason: str, error: BaseException | None = None) -> None:
        self.failures.append(Failure(event, reason, error, retriable=True))

    def drop(self, event: Event, why: str) -> None:
        self.dropped[why] += 1
        if why in PASSED_OVER:
            self.passed_over.append(event)

    def reset(self) -> None:
        self.failures = []
        self.dropped = Counter()
        self.passed_over = []


def decode_records(
    batches: dict[TopicPartition, list[Any]],
    tier_of: dict[str, int],
    decoders: dict[str, Callable[[bytes], dict[str, Any]]],
    ctx: NodeContext,
    stats: BatchStats,
) -> tuple[list[Event], dict[TopicPartition, int]]:
    """Fetched records as events (a record that cannot be decoded is rejected with its reason),
    and the offset to commit per partition once the batch is done. ``decoders`` has one decode
    function per topic read (a retry tier decodes like the input it serves)."""
    events: list[Event] = []
    offsets: dict[TopicPartition, int] = {}
    append, reject = events.append, ctx.reject
    n_in = 0
    for tp, records in batches.items():
        if not records:
            continue
        tier = tier_of[tp.topic]
        topic, partition = tp.topic, tp.partition
        decode = decoders[topic]
        offsets[tp] = records[-1].offset + 1
        n_in += len(records)
        # e2e latency is a distribution: a few dozen samples per partition and batch suffice
        stats.timestamps_ms.extend(r.timestamp for r in records[:: max(1, len(records) // 32)])
        for record in records:
            raw = record.value
            offset = record.offset
            event = Event(
                {}, record.key, raw, record.headers, topic, partition, offset, record.timestamp,
                tier, topic, partition, offset,
            )  # fmt: skip
            if tier:
                restore_origin(event)
            if raw is None:
                reject(event, "null_value", DecodeError("null_value", "the record has no value"))
                continue
            try:
                event.value = decode(raw)
            except DecodeError as exc:
                reject(event, exc.reason, exc)
                continue
            except Exception as exc:
                reject(event, "decode_error", exc)
                continue
            append(event)
    stats.n_in = n_in
    return events, offsets


def restore_origin(event: Event) -> None:
    """A retried record carries where it first came from; lineage and DLQ headers report that."""
    values = H.as_dict(event.headers)
    event.source_topic = values.get(H.ERROR_TOPIC, event.topic)
    event.source_partition = int(values.get(H.ERROR_PARTITION, event.partition))
    event.source_offset = int(values.get(H.ERROR_OFFSET, event.offset))
    first = values.get(H.ERROR_FIRST_FAILURE)
    event.first_failure_ms = int(first) if first else None
    timestamp = values.get(H.ERROR_TIMESTAMP)
    if timestamp:
        event.timestamp = int(timestamp)
