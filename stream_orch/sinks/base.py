"""The seam between a node and a target outside Kafka (HTTP, PostgreSQL...).

Where a sink sits in a batch (``NodePipeline.process``): decode -> steps -> route (Kafka outputs
into the outbox; each external target's records rendered into a list of :class:`SinkRecord`) ->
``await sink.deliver(records, batch)`` for every sink of the node, concurrently -> one
:class:`Outcome` per record -> a record to retry goes to the node's next retry tier with the
header ``so.retry.target=<sink name>`` (when the node reads it back, routing delivers it to that
sink only: the other routes' outputs are not repeated), a rejected record (or one out of tiers)
to the DLQ with its reason -> the batch's Kafka writes (outputs, retries, dead letters, changelog,
input offsets) land together as the node's guarantee says.

A retry of one target carries the record as it was rendered (its JSON), not the input: the
node's steps do not run again for it (its state and its other outputs stand), so it is the same
record, with the same ``source`` and ``index``, that the sink sees again.

So a sink sees each record at least once. What it sees again after a crash is a batch the node
re-processes from its last committed Kafka offsets: the same records, with the same
:attr:`SinkRecord.consumed` coordinates. A sink that can store the offsets it has applied beside
its data in one transaction (the offsets-in-the-sink pattern) gets exactly once: in
:meth:`Sink.on_assign` it reads what it holds for the partitions the node now owns, and in
:meth:`Sink.deliver` it answers :data:`DELIVERED` without writing for every record whose
``consumed`` offset is below what it holds, and stores ``batch.offsets`` with the rows it writes.
Careful: the node writes a batch's retries and dead letters again from the outcomes of its
re-processing, so a record below the stored offsets must get the outcome it got the first time:
a row the destination refused is the same :class:`Reject` again (store refusals, with their
reasons, in the same transaction as the rows and offsets), and a record answered :class:`Retry`
is a :class:`Retry` again (store those too, or roll the whole batch back and answer Retry for all
of it, so the offsets do not move past it). Answering :data:`DELIVERED` for either would lose it.

Rules for an implementation:

- ``deliver`` never raises for a record or for its destination: a destination that is down or
  slow is a :class:`Retry` for each record (the node goes on with the next batch; the records
  come back through the retry tiers), a record the destination refuses is a :class:`Reject`.
  An exception escaping ``deliver`` is taken as a :class:`Retry` of every record of the call,
  with the exception's class name as reason (logged without the message, which may quote data).
- ``deliver`` returns when every record has its outcome; the node's batch waits for it (bound
  the wait: time-outs), and nothing of the records may be delivered after it returned.
- Nothing a sink logs or puts in a metric label carries record values, URLs with credentials or
  secrets (headers, DSNs).
- ``records`` may be empty (a batch with nothing for this target): ``batch.offsets`` still moved.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

# (topic, partition) -> the next offset to read: what the node commits to Kafka for the batch
Offsets = dict[tuple[str, int], int]


@dataclass(slots=True)
class SinkRecord:
    """One output of an event for one external target."""

    value: dict[str, Any]  # the event's value, projected onto the target's schema if it names one
    # ``value`` as JSON (orjson): the bytes the route would write to a JSON topic; empty for a
    # target whose model says it sends no JSON (``sends_json``: postgres takes ``value``)
    payload: bytes
    key: bytes | None  # the input record's key
    # where the node read the record: the input topic, or a retry tier (its own offsets)
    consumed: tuple[str, int, int]  # (topic, partition, offset)
    # where the record first entered the node: the input's coordinates, also for a retry
    source: tuple[str, int, int]  # (topic, partition, offset)
    timestamp: int  # the input record's timestamp, epoch ms
    attempt: int  # 0 for the input, n for retry tier n
    event: Any = None  # the node's Event (the runtime routes the record's failure with it)
    # n for the n-th record (from 0) for this target that one input record led to in its batch:
    # always 0 but for results of windows and joins, several of which one record can trigger
    index: int = 0


@dataclass(frozen=True, slots=True)
class SinkBatch:
    """What a sink may need of the batch the records come from."""

    topology: str
    node: str
    group: str  # the node's consumer group: offsets stored in a sink are keyed by it
    offsets: Offsets  # every partition the batch read (input and retry tiers), next offset each
    now_ms: int  # the batch's clock, epoch ms


@dataclass(frozen=True, slots=True)
class Delivered:
    """The destination has the record (or had it already)."""


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again through the node's retry tiers, not before ``not_before_ms`` (epoch ms) when given
    (a 429's Retry-After); the DLQ when the tiers are used up."""

    reason: str  # short, no record values: `http_503`, `timeout`, `connection_refused`
    not_before_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Reject:
    """The destination refuses the record: the DLQ at once with ``reason`` and ``headers`` (extra
    ``so.error.*`` headers, e.g. the HTTP status and the start of the response body)."""

    reason: str
    detail: str = ""  # the DLQ's so.error.message
    headers: tuple[tuple[str, bytes], ...] = ()


Outcome = Delivered | Retry | Reject
DELIVERED = Delivered()


@dataclass
class SinkContext:
    """What a sink is built with besides its spec."""

    topology: str
    node: str
    name: str  # the target's name (see ``models_delivery.external_targets``)
    group: str
    # (target, status class such as 2xx / 5xx / timeout, seconds): one request's latency
    observe: Callable[[str, str, float], None] = field(default=lambda target, status, seconds: None)
    # (target, reachable, why not): a sink that waits for its destination says so in /health
    state: Callable[[str, bool, str], None] = field(default=lambda target, up, reason: None)
    schemas: Any = None  # the topology's SchemaRegistry (a sink whose columns come from a schema)


@runtime_checkable
class Sink(Protocol):
    """One external target of a node, built once per node run (``sinks.build``)."""

    name: str

    async def start(self) -> None:
        """Open clients or pools. May not wait for the destination to be up: a destination that is
        down at start is a retry per record later, not a node that cannot start."""

    async def stop(self) -> None:
        """Close what ``start`` opened; called once, also after a failed start."""

    async def on_assign(self, partitions: set[tuple[str, int]]) -> None:
        """The node now owns exactly ``partitions`` (its input's and its retry tiers', as (topic,
        partition)) and will re-read each from its committed Kafka offset: called on every take-over
        (a rebalance, and a start-over after a failed batch), before the first batch of them. A sink
        that stores offsets reads them here. Raising starts the node over (it is called again)."""

    async def deliver(self, records: list[SinkRecord], batch: SinkBatch) -> list[Outcome]:
        """Deliver ``records`` (in input order); one outcome per record, in the same order."""
        ...
