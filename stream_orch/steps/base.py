"""The contract between the node executor and the steps.

A step sees a *batch* of events and returns the events that go on. Everything per batch
(not per event) is what keeps the hot path fast: one Python call per step per batch, no
awaits per event.

A step never raises for one bad record. It hands that record to the context instead:
``ctx.reject`` (straight to the DLQ), ``ctx.retry`` (through the retry topics when the
node's error policy says that reason is retriable, else the DLQ) or ``ctx.drop`` (counted
and gone: filtered, duplicate). An exception that escapes a step fails the whole batch and
the executor retries or dead-letters each of its events one by one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

# Reasons of ``ctx.drop`` for records that were fine but not wanted: the runtime's context keeps
# them as ``passed_over``, and a later window or join step of the node lets their event time move
# its watermark (a filter before a window does not hold the window open).
PASSED_OVER = frozenset({"filtered", "python_filtered", "duplicate", "missing_row"})


@dataclass(slots=True)
class Event:
    """One record in flight through a node."""

    value: dict[str, Any]
    key: bytes | None = None
    raw_value: bytes | None = None  # original bytes, kept for the DLQ and retries
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    topic: str = ""
    partition: int = 0
    offset: int = -1
    timestamp: int = 0  # record timestamp, epoch ms
    attempt: int = 0  # 0 on first delivery, n when read from retry tier n
    source_topic: str = ""  # the node input topic this record first came from
    source_partition: int = 0
    source_offset: int = -1
    first_failure_ms: int | None = None


class Table(Protocol):
    """A changelog-backed key/value store, split by input partition.

    ``partition`` is the partition of the event being processed; a global table ignores it.
    Writes are buffered and flushed to the changelog once per batch, before the commit; ``get``
    sees them at once (a step reads its own writes of the batch, as dedupe does).
    """

    name: str

    def get(self, key: str, partition: int, default: Any = None) -> Any: ...

    def set(self, key: str, value: Any, partition: int) -> None: ...

    def delete(self, key: str, partition: int) -> None: ...

    def drop(self, key: str, partition: int) -> None:
        """Delete a key the caller knows to exist (it just read it, or wrote it with one it just
        read): ``delete`` without the read that spares an absent key a tombstone."""
        ...

    def items(self, partition: int) -> Iterator[tuple[str, Any]]: ...

    def scan(self, partition: int, start: str, end: str) -> Iterator[tuple[str, Any]]:
        """The keys in ``[start, end)`` (any order); a local table on RocksDB reads only those."""
        ...


@runtime_checkable
class WholeRowsTable(Protocol):
    """A table whose rows are replaced whole, never changed in place (a topic-fed table,
    ``state/topic_rows.py``): a reader may keep what it derived from a row for as long as the
    key holds that same object (``enrich``)."""

    @property
    def rows(self) -> Mapping[str, Any]: ...


class StepContext(Protocol):
    """What the executor offers a step while it processes one batch."""

    topology: str
    node: str
    constants: MutableMapping[str, Any]

    def table(self, name: str) -> Table: ...

    def reject(self, event: Event, reason: str, error: BaseException | None = None) -> None:
        """Send the event to the DLQ now: the record itself is bad."""

    def retry(self, event: Event, reason: str, error: BaseException | None = None) -> None:
        """Try the event again later through the retry tiers (DLQ when they are used up)."""

    def drop(self, event: Event, why: str) -> None:
        """Let the event go without output, counted under ``why`` (``filtered``, ``duplicate``)."""


class Step(Protocol):
    """A built-in or user step, built once from its spec when the node starts (each built-in
    implementation by its ``from_spec(spec, build)``, called by ``registry.build_step``)."""

    name: str

    async def run(self, events: list[Event], ctx: StepContext) -> list[Event]: ...


@runtime_checkable
class ExpiringStep(Protocol):
    """A step whose table holds entries that event time leaves behind (old ids, empty windows);
    the executor calls ``prune`` now and then, and the deletions reach the changelog."""

    table_name: str

    def prune(self, table: Table, partition: int) -> int: ...


@runtime_checkable
class LocalIndexStep(Protocol):
    """A step that keeps entries derived from its table's other entries (dedupe's time index)
    under the table keys in ``[local_keys[0], local_keys[1])``: the node keeps them in the local
    stores and out of the changelog, and a restore rebuilds them with ``derive``, which gives the
    derived entries' writes (None: a deletion) implied by a change of ``key`` from ``before`` to
    ``after`` (None: absent). No key the step takes from a record may fall in that range."""

    table_name: str
    local_keys: tuple[str, str]

    def derive(self, key: str, before: Any, after: Any) -> list[tuple[str, Any]]: ...


@runtime_checkable
class UndoingStep(Protocol):
    """A stateful step that takes back what it did for events that failed later in the same batch
    (so a retried or replayed event is neither a duplicate of itself, for dedupe, nor counted
    twice, for aggregate); the executor calls ``release`` once per batch, before the changelog
    is written, with no events when the batch is abandoned."""

    def release(self, failed: list[Event]) -> int: ...


@runtime_checkable
class LineageStep(Protocol):
    """A step whose identity belongs in the lineage of every output of its node (a model step:
    the model's name, version and file hash); the router adds ``lineage_headers`` to them."""

    lineage_headers: list[tuple[str, bytes]]


@runtime_checkable
class PerRecordStep(Protocol):
    """A step that takes each record on its own, keeping nothing and seeing nothing of the batch
    (derive, filter): a node of only these may run its batch in slices, decode to routes, and
    give the same outputs, failures and counts (``NodePipeline.sliced``)."""

    per_record: Literal[True]


@runtime_checkable
class TimedStep(Protocol):
    """A step that times a costly part of its work (a model call); the pipeline collects
    ``(what, seconds)`` once per batch into the batch's stats, for a histogram."""

    def drain_timings(self) -> list[tuple[str, float]]: ...
