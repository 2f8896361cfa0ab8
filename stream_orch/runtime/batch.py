"""One batch in a node: its events, what steps reported about them, and its figures."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import TopicPartition

from stream_orch.codecs import DecodeError, JsonCodec
from stream_orch.reliability import headers as H
from stream_orch.steps.base import PASSED_OVER, Event, Table
from stream_orch.steps.source_watermarks import is_watermark_record
from stream_orch.topology.naming import DECODE_STAGE


@dataclass
class Failure:
    event: Event
    reason: str
    error: BaseException | None
    retriable: bool
    # an external target's delivery failed: its retry and dead letter carry ``payload`` (the
    # rendered record, not the input: the steps are not run again) and so.retry.target (only that
    # target is delivered again), not before not_before_ms (a 429's Retry-After); ``index``: the
    # record's place among the target's records of one input record; headers: so.error.* the
    # destination's answer adds to its dead letter (an HTTP status and body excerpt)
    target: str | None = None
    not_before_ms: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    payload: bytes | None = None
    index: int = 0
    step: str = ""  # where it failed: a step's label (step_labels), decode or route (naming.py)


@dataclass
class BatchStats:
    """What one batch did, handed to metrics once per batch."""

    n_in: int = 0
    outputs: Counter[tuple[str, str]] = field(default_factory=Counter)  # (route, topic) -> n
    dropped: Counter[str] = field(default_factory=Counter)
    dead_lettered: Counter[tuple[str, str]] = field(default_factory=Counter)  # (reason code, step) -> n
    retried: Counter[int] = field(default_factory=Counter)  # tier -> n
    errors: Counter[str] = field(default_factory=Counter)  # error class -> n
    sinks: Counter[tuple[str, str]] = field(default_factory=Counter)  # (target, outcome) -> records
    timestamps_ms: list[int] = field(default_factory=list)
    processing_s: float = 0.0  # decode, steps and routing: the node's own work
    timings: list[tuple[str, float]] = field(default_factory=list)  # (model, seconds) per model call
    # where the batch's time went, (phase, seconds), filled by the loop and the delivery: see
    # PHASES; observed once per batch (never per record)
    phases: list[tuple[str, float]] = field(default_factory=list)


# The phases of a batch's latency (the values of the ``phase`` label of batch_phase_seconds):
# fetch_wait    the fetch call that returned the batch
# batch_fill    the batch's oldest input record: its timestamp to the batch's start (the producer's
#               clock: a skewed client clock shows here)
# steps         decode, steps and routing (as batch_processing_seconds)
# handover_wait the hand-over waiting for the previous batch's delivery to end
# produce_acks  the outputs sent to acknowledged (exactly_once: the outputs, changelog writes and
#               offsets sent to acknowledged inside the transaction, the slowest task's)
# changelog_acks  at_least_once: the changelog writes, sent after the outputs' acknowledgement
# txn_commit    exactly_once: commit_transaction, call to return (the slowest task's); the
#               markers' visibility to a read_committed reader follows it and is not seen here
PHASES = (
    "fetch_wait", "batch_fill", "steps", "handover_wait", "produce_acks", "changelog_acks", "txn_commit",
)  # fmt: skip


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
        # the node's external targets (a retry's so.retry.target must name one of them), and the
        # batch's retries of one target: id(event) -> (target name, index) (the events are alive
        # all batch; they skip the steps: their value is the record as rendered for the target)
        self.external_targets: frozenset[str] = frozenset()
        self.retry_targets: dict[int, tuple[str, int]] = {}
        # where the batch is: the running step's label, set once per step and batch (the
        # failures it reports carry it; decoding and routing are stages of their own)
        self.step = DECODE_STAGE

    def table(self, name: str) -> Table:
        return self._tables[name]

    def reject(self, event: Event, reason: str, error: BaseException | None = None) -> None:
        self.failures.append(Failure(event, reason, error, retriable=False, step=self.step))

    def retry(self, event: Event, reason: str, error: BaseException | None = None) -> None:
        self.failures.append(Failure(event, reason, error, retriable=True, step=self.step))

    def drop(self, event: Event, why: str) -> None:
        self.dropped[why] += 1
        if why in PASSED_OVER:
            self.passed_over.append(event)

    def reset(self) -> None:
        self.failures = []
        self.dropped = Counter()
        self.passed_over = []
        self.step = DECODE_STAGE
        if self.retry_targets:
            self.retry_targets = {}


def decode_records(
    batches: dict[TopicPartition, list[Any]],
    tier_of: dict[str, int],
    decoders: dict[str, Callable[[bytes], dict[str, Any]]],
    ctx: NodeContext,
    stats: BatchStats,
    *,
    sample: bool = True,
) -> tuple[list[Event], dict[TopicPartition, int]]:
    """Fetched records as events, and the offset to commit per partition once the batch is done.
    ``decoders`` has one decode function per topic read (a retry tier decodes like the input it
    serves). Nothing here raises for a record's bytes or headers: a record without a value, one
    that cannot be decoded, and a retry whose ``so.*`` headers are not the engine's are rejected
    with their reason (to the DLQ with their bytes, never retried: they would fail the same way).
    A watermark record (no value, ``so.wm.only``) is no input: it goes to the context's
    ``passed_over`` for the window steps, uncounted. ``sample``: take the records' timestamps
    for the latency distribution (:func:`sample_timestamps`; a caller decoding a batch in parts
    takes them once)."""
    events: list[Event] = []
    offsets: dict[TopicPartition, int] = {}
    append, reject = events.append, ctx.reject
    origins = {topic for topic, tier in tier_of.items() if not tier}  # what a retry may come from
    n_in = 0
    for tp, records in batches.items():
        if not records:
            continue
        tier = tier_of[tp.topic]
        topic, partition = tp.topic, tp.partition
        decode = decoders[topic]
        loads = _json_loads(decode)
        offsets[tp] = records[-1].offset + 1
        n_in += len(records)
        if sample:
            _sample(records, stats)
        for record in records:
            raw = record.value
            offset = record.offset
            # a tuple, as a ConsumerRecord has them: aiokafka's C record (transport/fetched.py)
            # has a fresh list, empty on most records, that the event would keep to its end
            headers = record.headers
            event = Event(
                {}, record.key, raw, tuple(headers) if headers else (), topic, partition, offset,
                record.timestamp, tier, topic, partition, offset,
            )  # fmt: skip
            if tier:
                if (bad := restore_origin(event, origins, ctx)) is not None:
                    reject(event, f"bad_header: {bad}", DecodeError("bad_header", _BAD_HEADER[bad]))
                    continue
                if id(event) in ctx.retry_targets:  # the JSON rendered for one target, any input format
                    if _rendered(event, reject):
                        append(event)
                    continue
            if raw is None:
                if is_watermark_record(event.headers):  # for the event-time steps only
                    n_in -= 1
                    ctx.passed_over.append(event)
                    continue
                reject(event, "null_value", DecodeError("null_value", "the record has no value"))
                continue
            if loads is not None:  # JsonCodec.decode's common case inline: a call less per record
                try:
                    value = loads(raw)
                except Exception:
                    value = None
                if value.__class__ is dict:
                    event.value = value
                    append(event)
                    continue
            try:  # (again, for JSON that is not an object: the codec's own error)
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


def _json_loads(decode: Callable[[bytes], Any]) -> Callable[[bytes], Any] | None:
    """orjson's ``loads`` when ``decode`` is a plain :meth:`JsonCodec.decode` (which returns
    what it returns for a JSON object and raises the codec's own error for anything else)."""
    owner = getattr(decode, "__self__", None)
    if owner.__class__ is JsonCodec and getattr(decode, "__func__", None) is JsonCodec.decode:
        return orjson.loads
    return None


def _sample(records: list[Any], stats: BatchStats) -> None:
    # e2e latency is a distribution: a few dozen samples per partition and batch suffice
    stats.timestamps_ms.extend(r.timestamp for r in records[:: max(1, len(records) // 32)])


def sample_timestamps(batches: dict[TopicPartition, list[Any]], stats: BatchStats) -> None:
    """The timestamps :func:`decode_records` samples from ``batches``."""
    for records in batches.values():
        if records:
            _sample(records, stats)


def slices(batches: dict[TopicPartition, list[Any]], size: int) -> Iterator[dict[TopicPartition, list[Any]]]:
    """``batches`` in consecutive parts of ``size`` records (the last may be smaller), in their
    order: a partition's records may end one part and begin the next."""
    part: dict[TopicPartition, list[Any]] = {}
    n = 0
    for tp, records in batches.items():
        start = 0
        while start < len(records):
            taken = records[start : start + size - n]
            part[tp] = taken
            n += len(taken)
            start += len(taken)
            if n >= size:
                yield part
                part, n = {}, 0
    if part:
        yield part


# the DLQ message for a bad header: what the engine would have written there
_BAD_HEADER = {
    H.ERROR_TOPIC: f"{H.ERROR_TOPIC} is not a topic this node reads",
    H.ERROR_PARTITION: f"{H.ERROR_PARTITION} is not the partition the retry is on",
    H.ERROR_OFFSET: f"{H.ERROR_OFFSET} is not an offset",
    H.ERROR_TIMESTAMP: f"{H.ERROR_TIMESTAMP} is not a timestamp up to the record's own",
    H.ERROR_FIRST_FAILURE: f"{H.ERROR_FIRST_FAILURE} is not a timestamp",
    H.RETRY_DUE: f"{H.RETRY_DUE} is not a timestamp",
    H.RETRY_TARGET: f"{H.RETRY_TARGET} is not a target of this node",
    H.RETRY_INDEX: f"{H.RETRY_INDEX} is not an index",
}
_json = JsonCodec().decode


def _rendered(event: Event, reject: Callable[..., None]) -> bool:
    """Decode a retry of one target (its value: the JSON rendered for the target)."""
    if event.raw_value is None:
        reject(event, "null_value", DecodeError("null_value", "the record has no value"))
        return False
    try:
        event.value = _json(event.raw_value)
    except DecodeError as exc:
        reject(event, exc.reason, exc)
        return False
    return True


def restore_origin(event: Event, origins: set[str], ctx: NodeContext) -> str | None:
    """A retried record carries where it first came from; lineage and DLQ headers report that.

    The headers are data like the record's value: anyone who can write to a retry topic can set
    them. Each must be what the engine writes (a topic the node reads, the partition the retry
    is on: retries keep their partition; numbers as :func:`H.number` reads them; a timestamp
    not later than the record's own, which the engine copies from it and the broker accepted; a
    ``so.retry.target`` naming one of the node's external targets, noted in ``ctx.retry_targets``).
    Returns the name of the first header that is not, with the event left at its own
    coordinates; None when all are (an absent or empty header: the record's own value)."""
    values = {k: v for k, v in (event.headers or []) if v}
    topic = values.get(H.ERROR_TOPIC)
    origin = event.topic
    if topic is not None:
        origin = topic.decode("utf-8", "replace")
        if origin not in origins:
            return H.ERROR_TOPIC
    partition = _number(values, H.ERROR_PARTITION, event.partition)
    if partition != event.partition:
        return H.ERROR_PARTITION
    offset = _number(values, H.ERROR_OFFSET, event.offset)
    if offset is None:
        return H.ERROR_OFFSET
    timestamp = _number(values, H.ERROR_TIMESTAMP, event.timestamp)
    if timestamp is None or timestamp > event.timestamp:
        return H.ERROR_TIMESTAMP
    first = _number(values, H.ERROR_FIRST_FAILURE, 0)
    if first is None:
        return H.ERROR_FIRST_FAILURE
    if _number(values, H.RETRY_DUE, 0) is None:  # the pacer took it as due at once
        return H.RETRY_DUE
    target = values.get(H.RETRY_TARGET)
    if target is not None:
        name = target.decode("utf-8", "replace")
        if name not in ctx.external_targets:
            return H.RETRY_TARGET
        index = _number(values, H.RETRY_INDEX, 0)
        if index is None:
            return H.RETRY_INDEX
        ctx.retry_targets[id(event)] = (name, index)
    event.source_topic, event.source_partition, event.source_offset = origin, partition, offset
    event.timestamp = timestamp
    event.first_failure_ms = first or None
    return None


def _number(values: dict[str, bytes], name: str, default: int) -> int | None:
    value = values.get(name)
    return default if value is None else H.number(value)
