"""``dedupe``: drop a record whose identifier was seen within ``horizon`` of event time (rule c).

State: the table ``ctx.table(table)`` maps ``str(record[field])`` (its ASCII separators escaped:
:mod:`~stream_orch.steps.table_keys`) to the event time (epoch ms) at which the identifier was
last seen, per input partition. A record is a duplicate, and goes
to ``ctx.drop(event, "duplicate")``, when its identifier is in the table (or earlier in the same
batch) and ``|ts - seen| < horizon``; otherwise the table stores ``max(ts, seen)``. A record
without the identifier or with a time that is not an int goes to ``ctx.reject``.

A record that passes and then fails in a later step of the same batch (it goes to a retry tier
or the DLQ) must not keep its identifier: its retry, or its replay from the DLQ, would be
dropped as a duplicate of itself. The runtime calls :meth:`DedupeStepImpl.release` after every
batch with the events that failed; their marks are undone before the changelog is written.

Pruning: nothing expires by itself. The step tracks, per partition, the newest event time it has
seen (its watermark); the runtime calls :meth:`DedupeStepImpl.prune` on a timer (every minute,
say) with each owned partition's table, which deletes identifiers last seen at or before
``watermark - horizon`` (they can no longer make a record a duplicate, unless that record is
more than ``horizon`` late). It finds them through a time index kept in the same table: exactly
one key ``<RS><minute bucket><RS><identifier>`` per identifier, the bucket of its value (RS is
the ASCII record separator, which no escaped identifier contains, so no identifier falls among
the index keys; an identifier that moves to a newer bucket has its older entry deleted). Prune
reads only the expired buckets: a 24 h horizon of hundreds of millions of identifiers is never
scanned whole.

The index is local, derived state (:class:`~stream_orch.state.tables.LocalKeys`, declared
through :class:`~stream_orch.steps.base.LocalIndexStep`): written to the local stores with the
identifiers, never to the changelog, and rebuilt by :meth:`DedupeStepImpl.derive` from each
identifier's changelog records when a store is restored. The changelog so holds one record per
identifier written (it held two per new identifier while the index went there too), and a
tombstone of an identifier (its expiry, its erasure by ``stream-orch forget``) also deletes its
index entry at a restore: no index key outlives its identifier. A changelog written while the
index went there still restores: its index records are left out and the entries derived from
the identifiers instead (:mod:`~stream_orch.state.restore`).
"""

from __future__ import annotations

from typing import Any

from stream_orch.steps.base import Event, StepContext, Table
from stream_orch.steps.common import StepBuild, show
from stream_orch.steps.table_keys import record_key
from stream_orch.topology.models import DedupeStep

BUCKET_MS = 60_000
INDEX = "\x1e"


def index_key(seen_ms: int, ident: str) -> str:
    return f"{INDEX}{seen_ms // BUCKET_MS:015d}{INDEX}{ident}"


_IDENT_AT = len(index_key(0, ""))  # where the identifier begins in an index key
INDEX_END = "\x1f"  # the index keys are those in [INDEX, INDEX_END)
_PREFIXES_KEPT = 1024  # index key prefixes kept (then forgotten): a day of buckets is 1,440


class DedupeStepImpl:
    @classmethod
    def from_spec(cls, spec: DedupeStep, build: StepBuild) -> DedupeStepImpl:
        return cls(
            field=spec.field,
            table=spec.table,
            horizon_ms=spec.horizon,
            time_field=spec.time_field,
            name=build.name,
        )

    def __init__(
        self, *, field: str, table: str, horizon_ms: int, time_field: str = "ts", name: str = "dedupe"
    ) -> None:
        self.name = name
        self.field = field
        self.table_name = table
        self.horizon_ms = int(horizon_ms)
        self.time_field = time_field
        self.watermarks: dict[int, int] = {}  # partition -> newest event time seen
        self.local_keys = (INDEX, INDEX_END)  # the time index: kept locally (LocalIndexStep)
        self._table: Table | None = None
        # the index keys' prefixes by bucket: formatting the bucket was a tenth of the step
        self._prefixes: dict[int, str] = {}
        # this batch's marks in order: (event, key, value before, value set); found by the event's
        # coordinates only in release, when some failed (a list append a record, not a dict entry
        # under a tuple key)
        self._marks: list[tuple[Event, str, int | None, int]] = []

    async def run(self, events: list[Event], ctx: StepContext) -> list[Event]:
        table = self._table = ctx.table(self.table_name)
        get, put = table.get, table.set
        mark = self._marks.append
        field, time_field, horizon = self.field, self.time_field, self.horizon_ms
        watermarks = self.watermarks
        prefixes = self._prefixes
        out: list[Event] = []
        append = out.append
        for event in events:
            record = event.value
            ident = record.get(field)
            if ident is None:
                ctx.reject(event, f"missing_field: {field} is required to dedupe")
                continue
            ts = record.get(time_field)
            if ts.__class__ is not int:
                ctx.reject(event, f"invalid_field: {time_field} must be epoch ms (got {show(ts)})")
                continue
            # record_key's common case inline (a call a record): printable text is its own key
            key = ident if ident.__class__ is str and ident.isprintable() else record_key(ident)
            partition = event.partition
            seen = get(key, partition)  # a table reads its own writes: earlier in the batch too
            if seen is not None and -horizon < ts - seen < horizon:
                ctx.drop(event, "duplicate")
                continue
            newest = ts if seen is None or ts > seen else seen
            put(key, newest, partition)
            bucket = newest // BUCKET_MS
            if seen is None or bucket != seen // BUCKET_MS:
                prefix = prefixes.get(bucket)
                if prefix is None:
                    if len(prefixes) >= _PREFIXES_KEPT:
                        prefixes.clear()
                    prefix = prefixes[bucket] = index_key(bucket * BUCKET_MS, "")
                put(prefix + key, 1, partition)
                if seen is not None:  # one entry per identifier: the older bucket's goes
                    table.delete(index_key(seen, key), partition)
            mark((event, key, seen, newest))
            if ts > watermarks.get(partition, -1):
                watermarks[partition] = ts
            append(event)
        return out

    def release(self, failed: list[Event]) -> int:
        """Undo the marks of this batch's events that failed after passing (see the module
        docstring) and forget the batch; returns how many marks were undone. A mark that a later
        record of the batch has overwritten stays: that record passed and owns it now."""
        done, self._marks = self._marks, []
        table = self._table
        if not failed or not done or table is None:
            return 0
        # a later mark of the same coordinates (the event again, isolated after a step raised) wins
        marks = {(e.topic, e.partition, e.offset): (e.partition, key, *values) for e, key, *values in done}
        undone = 0
        for event in failed:
            mark = marks.get((event.topic, event.partition, event.offset))
            if mark is None:
                continue
            partition, key, before, set_to = mark
            if table.get(key, partition) != set_to:
                continue
            if before is None:
                table.delete(key, partition)
                table.delete(index_key(set_to, key), partition)
            else:
                table.set(key, before, partition)
                if before // BUCKET_MS != set_to // BUCKET_MS:  # the entry follows the value back
                    table.delete(index_key(set_to, key), partition)
                    table.set(index_key(before, key), 1, partition)
            undone += 1
        return undone

    def derive(self, key: str, before: Any, after: Any) -> list[tuple[str, Any]]:
        """The index writes (None: a deletion) that a change of identifier ``key`` from ``before``
        to ``after`` (None: absent) implies, as :meth:`run`, :meth:`release` and :meth:`prune`
        make them: a restore rebuilds the index from the identifiers with it."""
        old = before // BUCKET_MS if before.__class__ is int else None
        new = after // BUCKET_MS if after.__class__ is int else None
        if old == new:
            return []
        writes: list[tuple[str, Any]] = []
        if old is not None:
            writes.append((index_key(before, key), None))
        if new is not None:
            writes.append((index_key(after, key), 1))
        return writes

    def prune(self, table: Table, partition: int, watermark_ms: int | None = None) -> int:
        """Delete the identifiers of ``partition`` that have expired; returns how many.

        ``watermark_ms`` defaults to the newest event time this step has seen on the partition.
        """
        if watermark_ms is None:
            watermark_ms = self.watermarks.get(partition)
            if watermark_ms is None:
                return 0
        cutoff = watermark_ms - self.horizon_ms
        # the buckets that end at or before the cutoff: every id in them was seen then
        end = f"{INDEX}{(cutoff + 1) // BUCKET_MS:015d}"
        deleted = 0
        for index, _ in list(table.scan(partition, INDEX, end)):
            key = index[_IDENT_AT:]
            seen = table.get(key, partition)
            # a store written before the index had one entry per identifier may hold an entry
            # of an older bucket for an identifier seen again since: only the entry goes
            if seen is not None and (not isinstance(seen, int) or seen <= cutoff):
                table.delete(key, partition)
                deleted += 1
            table.delete(index, partition)
        return deleted
