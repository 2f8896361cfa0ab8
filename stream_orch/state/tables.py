"""Changelog-backed tables.

A local table is split by the partition of the node input (as Kafka Streams and Faust do), so a
worker holds exactly the state of the partitions it owns, each partition in a
:class:`~stream_orch.state.store.Store` (memory or RocksDB). The changelog topic
``<topology>.<table>.changelog`` is the truth; a store is a copy of a prefix of it, up to its
checkpoint, and a restore reads only the tail after that.

Batch-atomic state: a batch's writes go to an *overlay* that the batch (and the next one, while
this one is still being delivered) reads back. :meth:`LocalTable.seal` closes the overlay when
the batch is handed over; its changes go to the changelog with the batch. Only once the delivery
has landed them (acknowledged, or committed in the batch's transaction) does
:meth:`Sealed.land` write them to the stores, with the changelog offset as the new checkpoint,
in one write per partition. A failed batch drops its overlays: no store ever holds what its
changelog lost, and no table keeps what another table of the same batch lost.

Local keys: a table may keep keys in its stores that never go to its changelog
(:class:`LocalKeys`), state derived from its other keys (dedupe's time index). The changelog
then holds only the keys the state is made of, and a restore rebuilds the derived keys from
them: :mod:`~stream_orch.state.restore` hands every record it applies to ``LocalKeys.derive``.

A global table (:mod:`stream_orch.state.global_table`) is fed by a topic instead, and every
worker reads all of its partitions.
"""

from __future__ import annotations

import contextlib
import logging
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from stream_orch.state.store import TOMBSTONE, MemoryStore, Store

log = logging.getLogger(__name__)

Overlay = dict[int, dict[str, Any]]  # partition -> key -> value (TOMBSTONE: deleted)
_NO_HEADERS: list[Any] = []  # a changelog record's headers; never mutated
_I64_MIN, _U64_END = -(2**63), 2**64  # the integers orjson writes (it refuses the others)


def _json(value: Any) -> bytes | None:
    """``value`` as orjson writes it, in a bytes object of its own (None: a tombstone). An int
    (most table values: a dedupe's times, counters) is its decimal digits, as orjson writes it,
    at a third of the cost of orjson plus the copy out of its buffer."""
    if value.__class__ is int and _I64_MIN <= value < _U64_END:
        return b"%d" % value
    if value is TOMBSTONE:
        return None
    return memoryview(orjson.dumps(value)).tobytes()


# (key, value before or None, value after or None) -> the local keys' writes (None: delete)
Derive = Callable[[str, Any, Any], Iterable[tuple[str, Any]]]


@dataclass(frozen=True, slots=True)
class LocalKeys:
    """The keys in ``[start, end)`` of a table are local: written to its stores, never to its
    changelog. They are derived from the table's other keys, and ``derive`` says how: given a
    key's value before and after a change (None: absent), the local keys' writes it implies. A
    restore applies them with every changelog record it reads, so a store rebuilt from the
    changelog holds the same local keys as the one that wrote it."""

    start: str
    end: str
    derive: Derive

    def holds(self, key: str) -> bool:
        return self.start <= key < self.end


class Sealed:
    """One batch's writes to one table, handed over with the batch."""

    def __init__(self, table: LocalTable, overlay: Overlay) -> None:
        self.table = table
        self.overlay = overlay
        self._ordered: dict[int, list[str]] = {}  # sorted keys per partition, built by a scan
        self.encoded: dict[int, dict[str, bytes | None]] = {}  # the values as changes() encoded them

    def ordered(self, partition: int) -> list[str]:
        keys = self._ordered.get(partition)
        if keys is None:
            keys = self._ordered[partition] = sorted(self.overlay.get(partition, ()))
        return keys

    def changes(self) -> list[tuple[int, bytes, bytes | None]]:
        """The changelog records: (partition, key, value or None for a tombstone)."""
        return [(p, key, raw) for p, records in self.changelog().items() for key, raw, _, _ in records]

    def changelog(self) -> dict[int, list[tuple[bytes, bytes | None, None, list[Any]]]]:
        """The changelog records by partition, in the shape the runtime's outbox sends: (key,
        value or None for a tombstone, no timestamp, no headers). One record per key written in
        the batch: a key written many times goes out once, with its last value. The table's
        local keys are encoded for land() but stay out of the changelog."""
        # copied out of orjson's page-sized buffer: kept until acknowledged, each would hold a page.
        # The bytes are kept for land(): a store that keeps JSON (RocksDB) takes them as they are
        # instead of encoding every value a second time.
        out: dict[int, list[tuple[bytes, bytes | None, None, list[Any]]]] = {}
        local = self.table.local
        for partition, writes in self.overlay.items():
            encoded = self.encoded[partition] = {key: _json(value) for key, value in writes.items()}
            if local is None:
                out[partition] = [(key.encode(), raw, None, _NO_HEADERS) for key, raw in encoded.items()]
            else:
                start, end = local.start, local.end
                records = [
                    (key.encode(), raw, None, _NO_HEADERS)
                    for key, raw in encoded.items()
                    if not start <= key < end
                ]
                if records:  # a partition with only local writes sends nothing
                    out[partition] = records
        return out

    def land(self, acked: dict[tuple[str, int], int]) -> None:
        """The batch landed: write its changes to the stores, each partition's checkpoint after
        the last changelog offset ``acked`` for it ((topic, partition) -> last offset)."""
        self.table._land(self, acked)


class LocalTable:
    """State of the partitions this worker owns; values must be JSON-serialisable."""

    def __init__(self, name: str, changelog: str, open_store: Callable[[int], Store] | None = None) -> None:
        self.name = name
        self.changelog = changelog
        self._open_store = open_store or (lambda partition: MemoryStore())
        self._stores: dict[int, Store] = {}
        self._writes: Overlay = {}  # the batch being processed
        # sorted keys of the batch's writes per partition, kept from the batch's first scan on (a
        # join scans a key range per record: a pass over the whole overlay each time was O(n^2))
        self._ordered: dict[int, list[str]] = {}
        self._pending: list[Sealed] = []  # handed over, not landed yet; oldest first
        # their overlays, newest first, as get() reads them (kept with _pending: a reversed()
        # iterator and an attribute per batch on every read was a fifth of a dedupe miss)
        self._inflight: tuple[Overlay, ...] = ()
        self.restored_records = 0
        self.local: LocalKeys | None = None  # keys kept in the stores only (keep_local)

    def keep_local(self, local: LocalKeys | None) -> None:
        """Keep ``local``'s keys out of the changelog from the next seal on (None: none), and
        derive them from the other keys at restores. Declared by the step that owns them."""
        self.local = local

    # --- the Table protocol used by steps
    def get(self, key: str, partition: int, default: Any = None) -> Any:
        writes = self._writes.get(partition)
        if writes is not None and key in writes:
            value = writes[key]
            return default if value is TOMBSTONE else value
        for overlay in self._inflight:
            writes = overlay.get(partition)
            if writes is not None and key in writes:
                value = writes[key]
                return default if value is TOMBSTONE else value
        store = self._stores.get(partition)
        return default if store is None else store.get(key, default)

    def set(self, key: str, value: Any, partition: int) -> None:
        writes = self._writes.get(partition)
        if writes is None:
            writes = self._writes[partition] = {}
        if self._ordered and key not in writes:
            keys = self._ordered.get(partition)
            if keys is not None:
                insort(keys, key)
        writes[key] = value

    def delete(self, key: str, partition: int) -> None:
        if self.get(key, partition, TOMBSTONE) is not TOMBSTONE:
            self.set(key, TOMBSTONE, partition)

    def drop(self, key: str, partition: int) -> None:
        self.set(key, TOMBSTONE, partition)  # a key that turns out absent: a tombstone for nothing

    def items(self, partition: int) -> Iterator[tuple[str, Any]]:
        store = self._stores.get(partition)
        merged = dict(store.items()) if store is not None else {}
        for overlay in [*(s.overlay for s in self._pending), self._writes]:
            for key, value in overlay.get(partition, {}).items():
                if value is TOMBSTONE:
                    merged.pop(key, None)
                else:
                    merged[key] = value
        return iter(list(merged.items()))

    def scan(self, partition: int, start: str, end: str) -> Iterator[tuple[str, Any]]:
        """The partition's keys in ``[start, end)`` with the batches in flight applied (not in key
        order). RocksDB reads only that range: expiry by a time index needs no full scan."""
        overlaid: dict[str, Any] = {}
        layers = [(s.overlay.get(partition, {}), s.ordered(partition)) for s in self._pending]
        current = self._ordered.get(partition)
        if current is None:
            current = self._ordered[partition] = sorted(self._writes.get(partition, ()))
        layers.append((self._writes.get(partition, {}), current))
        for writes, keys in layers:  # oldest first: a newer write wins
            for key in keys[bisect_left(keys, start) : bisect_left(keys, end)]:
                overlaid[key] = writes[key]
        store = self._stores.get(partition)
        if store is not None:
            for key, value in store.scan(start, end):
                if key not in overlaid:
                    yield key, value
        for key, value in overlaid.items():
            if value is not TOMBSTONE:
                yield key, value

    def __len__(self) -> int:
        return sum(len(s) for s in self._stores.values())

    # --- used by the executor
    def seal(self) -> Sealed:
        """Close this batch's overlay: it is read through until it lands or is dropped."""
        sealed = Sealed(self, self._writes)
        self._writes = {}
        self._ordered = {}
        self._pending.append(sealed)
        self._inflight = (sealed.overlay, *self._inflight)
        return sealed

    def _land(self, sealed: Sealed, acked: dict[tuple[str, int], int]) -> None:
        with contextlib.suppress(ValueError):
            self._pending.remove(sealed)
        self._inflight = tuple(s.overlay for s in reversed(self._pending))
        for partition, writes in sealed.overlay.items():
            store = self._stores.get(partition)
            if store is None:  # revoked meanwhile: its next owner restores it from the changelog
                continue
            last = acked.get((self.changelog, partition))
            store.write(writes, None if last is None else last + 1, sealed.encoded.get(partition))

    def drop_pending(self) -> None:
        """The batches in flight failed: forget their writes (the stores never saw them)."""
        self._writes = {}
        self._ordered = {}
        self._pending = []
        self._inflight = ()

    def partitions(self) -> set[int]:
        return set(self._stores)

    def owns(self, partition: int) -> bool:
        return partition in self._stores

    def open(self, partition: int) -> Store:
        """The partition's store, opened (from local disk, if the backend keeps one) if need be."""
        store = self._stores.get(partition)
        if store is None:
            store = self._stores[partition] = self._open_store(partition)
        return store

    def reset(self, partition: int) -> Store:
        """Throw the partition's store away and start an empty one (it is restored in full)."""
        store = self._stores.pop(partition, None)
        if store is None:  # not `or`: an empty store has length 0, and is false
            store = self._open_store(partition)
        store.destroy()
        store = self._stores[partition] = self._open_store(partition)
        return store

    def partition_stats(self, partition: int) -> dict[str, Any]:
        store = self._stores[partition]
        return {"keys": len(store), "bytes_on_disk": store.size_bytes(), "checkpoint": store.checkpoint()}

    def checkpoint(self, partition: int) -> int | None:
        store = self._stores.get(partition)
        return None if store is None else store.checkpoint()

    def forget(self, partitions: set[int]) -> None:
        """Close the stores of partitions this worker no longer owns (kept on disk for its return)."""
        for p in partitions:
            store = self._stores.pop(p, None)
            if store is not None:
                store.close()
            self._writes.pop(p, None)

    def close(self) -> None:
        self.forget(set(self._stores))
