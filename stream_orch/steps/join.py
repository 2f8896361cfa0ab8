"""``join``: a stream-stream join of the node's input (the left side) with another topic.

The other topic (the right side) is co-partitioned with the input, and its records enter the node
at this step: the steps before it see only the input's records. Both sides wait in a table, split
by partition like every table a step writes (changelog-backed, restored after a restart), until
event time has passed the bound within which they can still match.

``interval``: a left record at time ``t`` matches every right record with the same key and time in
``[t - before, t + after]``, whichever of the two arrives first: the second to arrive finds the
first in the table and the join emits one record per pair, the left record with the right record's
``fields`` (all when unset) copied as ``prefix + field``; the other side's declared fields
(``fields``, else those of its topic's schema) are on every record the join emits, null when the
record is unmatched or the other record lacks one (a field the left record has itself keeps its
value; a topic without a schema and no ``fields`` declares nothing). ``as_of``: a left record at
``t`` takes the latest right record at or before ``t`` (no older than ``tolerance``); only left
records emit. Every emitted record gets ``status_as`` = ``matched`` or ``unmatched``.

A bound may come from each left record instead of a constant: ``after: {field, max}`` (or
``before``) reads the field as the latest (earliest) time a match may have, e.g. a shipment's
``promised_by``; a left record without it, or with one more than ``max`` from its own time, is
rejected. The left record keeps its own bounds in the table; a right record scans the left
records within the maxima (the time index still bounds every scan) and keeps those whose own
bounds hold it, and waits itself for the largest bound only (``t + max + grace``), so the state
stays bounded.

``how: left`` emits a left record that found no match as ``unmatched``: an interval join once
the *other side's* event time (its watermark on the partition: the newest time seen) has passed
``t + after + grace``, so "not reconciled within the bound" is an output like any other; an
as_of join at once. A buffered record waits for the other side's time, not for its own side's:
the worker reads the two in event-time order within a bounded lead
(:mod:`stream_orch.runtime.readorder`), but a side with nothing to read does not hold the other
back for long, so one may still run ahead by many batches, and a bound judged by the side that
ran ahead would report matches still on their way as missing (Kafka Streams meets the same
problem with task idling). So a side that stops altogether holds
its counterpart's records until it moves again. Both watermarks are kept in the table, so a
restarted worker expires what its predecessor would have.

A left record that arrives when the other side's time is already past its ``t + after + grace``
(the comparison the expiry makes) is not buffered: this batch's expiry would forget it. That is
the usual case: the joined topic is read ahead by the window, and its records of a batch enter the
step before the input's (:mod:`stream_orch.runtime.pipeline`). It is matched on arrival as any
other, then held for the rest of the batch only, where the batch's later right records find it as
they would in the table (one more than grace behind its side's time, not late), and a left join's
expiry emits it unmatched at its place in the index's order: outputs, their order and the table
left behind are the buffered path's, with no store writes, changelog records or index read for
it. Nothing of it outlives the batch, whose outputs commit with its offsets: a restart reads it
again. Its own side's late rule comes first, unchanged; with per-source watermarks the other
side's time is that minimum, as the batch has it so far (it only grows); as_of joins buffer as
before.

A side whose topic a node of the topology writes (a re-keying node; the reader has ``watermarks:
per_source``, the default) takes as its watermark the minimum over that writer's source
partitions, read from the ``so.wm`` headers and watermark records the writer adds, as a window
does (:mod:`stream_orch.steps.source_watermarks`; a source silent for a minute by the worker's
clock is left out): re-keying steps event time back within each partition by up to a batch's
span, and the greatest time read would call on-time records late and forget partners early. The
sources are kept per side in the table with the watermarks.

Late records (interval): ``grace`` is how late, out of order within its own stream, a record may
arrive. A record is late when its *own side's* watermark at it (the records of that side before
it, of the partition) is past the end of its window plus grace: ``t + after + grace`` for a left
record, ``t + before + grace`` for a right one (Kafka Streams' rule for join windows, with the
side's own time instead of the task's, for the reason above). A late record matches nothing,
is not buffered, and is not emitted as unmatched: it is dropped, counted as ``late_event``. A
record at most ``grace`` behind its side's time finds every partner that is not late itself,
whatever the batches and the arrival order (its partners wait until the other side's time passes
their own bound + grace); one further behind but not late matches the partners still waiting, and
may miss one already forgotten. as_of joins have no late rule: their ``grace`` keeps a right
record that long past its tolerance, for left records out of order.

Table layout (per partition): :mod:`~stream_orch.steps.join_layout`. The time index is
local state (:class:`~stream_orch.state.tables.LocalKeys`, through
:class:`~stream_orch.steps.base.LocalIndexStep`): written to the stores, never to the changelog,
and rebuilt by :meth:`JoinStepImpl.derive` from the buffered records' changelog records when a
store is restored (a changelog written while it went there too still restores: its index records
are left out). The changelog so holds the buffered records and their tombstones only. The input
side's watermark also moves with the records an earlier step of the node let go (filtered,
duplicate: :data:`~stream_orch.steps.base.PASSED_OVER`), at their offset's place. A record
absorbed without output yet is counted as ``join_buffered``; an inner as_of left record without a
match as ``join_unmatched``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stream_orch.reliability.headers import now_ms
from stream_orch.steps import source_watermarks as sw
from stream_orch.steps.base import Event, StepContext, Table
from stream_orch.steps.common import StepBuild, passed_over_times, show
from stream_orch.steps.join_layout import (
    EXPIRED,
    INDEX,
    INDEX_END,
    LEFT,
    OTHER,
    PAIRED,
    RIGHT,
    SEP,
    WAITING,
    WATERMARK,
    between,
    bound_of,
    entry_key,
    split,
)
from stream_orch.steps.join_records import Shape, stored_event, with_value
from stream_orch.steps.join_sources import Heard, Slot, ticked
from stream_orch.steps.table_keys import record_key
from stream_orch.topology.models import JoinStep


class JoinStepImpl:
    @classmethod
    def from_spec(cls, spec: JoinStep, build: StepBuild) -> JoinStepImpl:
        declared = spec.fields
        other = build.topology.topics.get(spec.topic)
        if declared is None and other is not None and other.schema_ and other.schema_ in build.schemas:
            declared = build.schemas.field_names(other.schema_)
        return cls(
            topic=spec.topic,
            table=spec.table,
            key=spec.key,
            other_key=spec.other_key,
            time_field=spec.time_field,
            kind=spec.kind,
            before_ms=bound_of(spec.before),
            after_ms=bound_of(spec.after),
            tolerance_ms=spec.tolerance,
            how=spec.how,
            grace_ms=spec.grace,
            fields=spec.fields,
            declared=declared,
            prefix=spec.prefix,
            status_as=spec.status_as,
            name=build.name,
            sources=(
                sw.expected_sources(build.topology, build.node),
                sw.expected_sources(build.topology, build.node, spec.topic),
            ),
        )

    def __init__(
        self,
        *,
        topic: str,
        table: str,
        key: str,
        other_key: str | None = None,
        time_field: str = "ts",
        kind: str = "interval",
        before_ms: int | tuple[str, int] = 0,
        after_ms: int | tuple[str, int] = 0,
        tolerance_ms: int | None = None,
        how: str = "inner",
        grace_ms: int = 0,
        fields: list[str] | None = None,
        declared: list[str] | None = None,
        prefix: str = "",
        status_as: str = "join_status",
        name: str = "join",
        sources: tuple[frozenset[str], frozenset[str]] | None = None,
        idle_timeout_ms: int = sw.IDLE_DEFAULT_MS,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.name = name
        # per side, the sources of a writer of the topology (re-keying): its watermark is their
        # minimum (empty: the greatest time the side has read on the partition)
        left, right = sources or (frozenset(), frozenset())
        self.sources = {LEFT: left, RIGHT: right}
        self.idle_ms = int(idle_timeout_ms)
        self.clock = clock or now_ms
        self._since: dict[int, int] = {}  # partition -> when this worker took it over
        # (partition, side) -> the earliest expiry buffered in the current batch (_keep), where
        # that side's expiry starts reading if it is below the last read (_expire)
        self._low: dict[Slot, int] = {}
        # Left records not buffered (``_left``: the other side's time had already passed their
        # bound), held for the rest of the batch only: (partition, key) -> [(entry, record)] for
        # the batch's later right records, partition -> [(index entry, record)] for the expiry
        self._held: dict[tuple[int, str], list[tuple[str, dict[str, Any]]]] = {}
        self._held_expiry: dict[int, list[tuple[str, dict[str, Any]]]] = {}
        self.skip_passed = True  # False: buffer them anyway (the path before; tests compare both)
        self.topic = topic
        self.table_name = table
        self.key = key
        self.other_key = other_key or key
        self.time_field = time_field
        self.kind = kind
        # a bound is a duration, or (field, max): each input record's field holds the earliest
        # (before) / latest (after) time of a match; `before`/`after` are then the maxima
        self.before_field, self.before = split(before_ms)
        self.after_field, self.after = split(after_ms)
        self.per_record = self.before_field is not None or self.after_field is not None
        self.tolerance = None if tolerance_ms is None else int(tolerance_ms)
        self.left_join = how == "left"
        self.grace = int(grace_ms)
        # the other side's fields every emitted record carries: see Shape
        declared_as = [prefix + f for f in declared] if declared is not None else None
        self.shape = Shape(fields, prefix, declared_as, status_as)  # what a match/unmatched emits
        self.local_keys = (INDEX, INDEX_END)  # the time index: kept locally (LocalIndexStep)

    async def run(self, events: list[Event], ctx: StepContext) -> list[Event]:
        table = ctx.table(self.table_name)
        out: list[Event] = []
        marks: dict[tuple[int, str], int] = {}  # (partition, side) -> its watermark, as the batch goes
        stored: dict[tuple[int, str], int] = {}  # ... as the table has it
        ticks = passed_over_times(ctx, self.time_field)
        interval = self.kind == "interval"
        heard = Heard(self, table, self.clock())  # the per-source sides' sources, as the batch goes
        self._low = {}  # a new batch
        self._held, self._held_expiry = {}, {}
        others: dict[int, int] = {}  # partition -> the right side's stored watermark
        per_source = bool(self.sources[LEFT] or self.sources[RIGHT])
        for event in events:
            right = event.topic == self.topic
            record = event.value
            key_field = self.other_key if right else self.key
            key = record.get(key_field)
            if key is None:
                ctx.reject(event, f"missing_field: {key_field} is required to join")
                continue
            t = record.get(self.time_field)
            if t.__class__ is not int:
                ctx.reject(event, f"invalid_field: {self.time_field} must be epoch ms (got {show(t)})")
                continue
            slot = (event.partition, RIGHT if right else LEFT)
            mark = marks.get(slot)
            if mark is None:
                mark = stored[slot] = table.get(WATERMARK + slot[1], event.partition, -1)
            if ticks:
                mark = ticked(mark, ticks.get((event.topic, event.partition)), event.offset, heard, slot)
            if per_source:
                marks[slot] = heard.moved(slot, mark, event, t)
            else:
                marks[slot] = t if t > mark else mark
            bounds = (self.before, self.after)
            if self.per_record and not right:
                found = self._bounds(record, t)
                if found.__class__ is str:
                    ctx.reject(event, found)
                    continue
                bounds = found
            if interval and t + (self.before if right else bounds[1]) + self.grace < mark:
                ctx.drop(event, "late_event")  # its side's time is past its bound + grace
                continue
            key = record_key(key)
            if right:
                emitted = self._right(table, event, key, t, out)
            else:
                other = marks.get((event.partition, RIGHT))
                if other is None:
                    other = others.get(event.partition)
                    if other is None:
                        other = others[event.partition] = table.get(WATERMARK + RIGHT, event.partition, -1)
                emitted = self._left(table, event, key, t, out, bounds, other)
            if not emitted:
                ctx.drop(event, "join_unmatched" if not right and self.kind == "as_of" else "join_buffered")
        for (topic, partition), times in ticks.items():  # what is left: after the batch's last record
            slot = (partition, RIGHT if topic == self.topic else LEFT)
            mark = marks.get(slot)
            if mark is None:
                mark = stored[slot] = table.get(WATERMARK + slot[1], partition, -1)
            marks[slot] = ticked(mark, times, None, heard, slot)
        for slot in heard.save():  # a source that fell silent no longer holds its side
            marks[slot] = max(marks[slot], heard.least(slot))
        for (partition, side), mark in marks.items():
            if mark > stored[(partition, side)]:
                table.set(WATERMARK + side, mark, partition)
        # Both sides of every partition in the batch: a record of one side may arrive after the
        # other side's time has already passed its bound (that side ran ahead, or stopped)
        for partition in sorted({p for p, _side in marks}):
            for side in (LEFT, RIGHT):
                mark = table.get(WATERMARK + OTHER[side], partition)
                if mark is not None:
                    self._expire(table, partition, side, mark, out)
        self._held, self._held_expiry = {}, {}
        return out

    # ------------------------------------------------------------------ the two sides

    def _bounds(self, record: dict[str, Any], t: int) -> tuple[int, int] | str:
        """The record's (before, after) in ms from its own fields, or why it is rejected."""
        out = []
        for name, field, most, sign in (
            ("before", self.before_field, self.before, -1),
            ("after", self.after_field, self.after, 1),
        ):
            if field is None:
                out.append(most)
                continue
            at = record.get(field)
            if at is None:
                return f"missing_field: {field} is required to join (its {name} bound)"
            if at.__class__ is not int or at < 0:
                return f"invalid_field: {field} must be epoch ms (got {show(at)})"
            reach = (at - t) * sign
            if reach > most:
                return f"invalid_field: {field} is more than {most} ms {name} {self.time_field} (max)"
            out.append(reach)
        return out[0], out[1]

    def _left(
        self,
        table: Table,
        event: Event,
        key: str,
        t: int,
        out: list[Event],
        bounds: tuple[int, int],
        other: int = -1,
    ) -> int:
        p = event.partition
        if self.kind == "as_of":
            lo = -1 if self.tolerance is None else t - self.tolerance
            found = between(table, p, RIGHT, key, lo, t)
            if found:
                out.append(with_value(event, self.shape.merge(event.value, found[-1][1]["v"])))
                return 1
            if self.left_join:
                out.append(with_value(event, self.shape.unmatched(event.value)))
                return 1
            return 0
        before, after = bounds
        found = between(table, p, RIGHT, key, t - before, t + after) if -before <= after else []
        for _k, stored in found:
            out.append(with_value(event, self.shape.merge(event.value, stored["v"])))
        entry = entry_key(LEFT, key, t, event.source_offset)
        value = {
            "v": dict(event.value),  # later steps change the event's dict in place
            "m": bool(found),
            "k": None if event.key is None else event.key.decode("latin-1"),
            "c": [event.source_topic, event.source_partition, event.source_offset, event.timestamp],
        }
        if self.per_record:
            value["b"] = [before, after]  # for the other side's records still to come
        expires = t + after + self.grace
        if t >= 0 and expires < other and self.skip_passed:
            # The right side's time has already passed the bound, as _expire compares it: this
            # batch's expiry would forget the record. Only the batch's later right records could
            # still find it, so it waits for them here, not in the table (no store writes, no
            # changelog records, no index scan), and an unmatched one is emitted by _expire
            self._held.setdefault((p, key), []).append((entry, value))
            if self.left_join and not found:
                index = f"{INDEX}{LEFT}{expires:015d}{INDEX}{entry}"
                self._held_expiry.setdefault(p, []).append((index, value))
            return len(found)
        self._keep(table, p, entry, value, expires, PAIRED if found else WAITING)
        return len(found)

    def _right(self, table: Table, event: Event, key: str, t: int, out: list[Event]) -> int:
        p = event.partition
        entry = entry_key(RIGHT, key, t, event.source_offset)
        if self.kind == "as_of":
            if self.tolerance is not None:
                kept = {"v": self.shape.kept(event.value)}
                self._keep(table, p, entry, kept, t + self.tolerance + self.grace)
                return 0
            # unbounded: only the latest record per key is of use (older ones within grace stay,
            # for a late left record); expiry of the rest happens here, not through the index
            for older, _ in between(table, p, RIGHT, key, -1, t - self.grace - 1):
                table.drop(older, p)  # the scan found it
            table.set(entry, {"v": self.shape.kept(event.value)}, p)
            return 0
        emitted = 0
        found = between(table, p, LEFT, key, t - self.after, t + self.before)
        held = self._held.get((p, key)) if self._held else None
        if held:  # left records this batch did not buffer, in the order the table would give
            prefix = f"{LEFT}{SEP}{key}{SEP}"
            lo, hi = f"{prefix}{max(t - self.after, 0):015d}", f"{prefix}{t + self.before + 1:015d}"
            found = sorted(found + [h for h in held if lo <= h[0] < hi], key=lambda f: f[0])
        for left_entry, stored in found:
            if "b" in stored:  # the left record's own bounds, within the maxima scanned
                lt = int(left_entry.rsplit(SEP, 2)[1])
                if not lt - stored["b"][0] <= t <= lt + stored["b"][1]:
                    continue
            out.append(stored_event(stored, self.shape.merge(stored["v"], event.value)))
            emitted += 1
            if self.left_join and not stored["m"]:
                # matched: said by the record (the changelog's truth). Its index entry stays
                # WAITING: its expiry reads the record, which then needs no lookup to be deleted,
                # where rewriting the entry cost a lookup and a write here (5 % of the
                # instructions per record when the right records come last)
                if held and any(h[1] is stored for h in held):
                    stored["m"] = True  # held, not in the table: _expire reads it there
                else:
                    table.set(left_entry, {**stored, "m": True}, p)
        self._keep(table, p, entry, {"v": self.shape.kept(event.value)}, t + self.before + self.grace)
        return emitted

    # ------------------------------------------------------------------ buffering and expiry

    def _keep(
        self,
        table: Table,
        partition: int,
        entry: str,
        value: dict[str, Any],
        expires: int,
        mark: int = WAITING,
    ) -> None:
        """Buffer ``entry`` until the other side's watermark passes ``expires``."""
        table.set(entry, value, partition)
        table.set(f"{INDEX}{entry[0]}{expires:015d}{INDEX}{entry}", mark, partition)
        slot = (partition, entry[0])
        low = self._low.get(slot)
        if low is None or expires < low:
            self._low[slot] = expires

    def _expires(self, entry: str, value: dict[str, Any]) -> int | None:
        """When ``entry`` (with ``value``) expires, as :meth:`_left` and :meth:`_right` buffer it
        (None: never through the index, an unbounded as_of join's right records)."""
        t = int(entry.rsplit(SEP, 2)[1])
        if entry[0] == LEFT:
            return t + (value["b"][1] if "b" in value else self.after) + self.grace
        if self.kind == "interval":
            return t + self.before + self.grace
        return None if self.tolerance is None else t + self.tolerance + self.grace

    def _index(self, entry: str, value: dict[str, Any]) -> str:
        return f"{INDEX}{entry[0]}{self._expires(entry, value):015d}{INDEX}{entry}"

    def derive(self, key: str, before: Any, after: Any) -> list[tuple[str, Any]]:
        """The time index writes (None: a deletion) that a change of ``key`` from ``before`` to
        ``after`` (None: absent) implies, as :meth:`run` makes them: a restore rebuilds the index,
        kept out of the changelog, from the buffered records with it."""
        if key[:2] not in (LEFT + SEP, RIGHT + SEP):
            return []  # watermarks, sources
        old = None if before is None or self._expires(key, before) is None else self._index(key, before)
        new = None if after is None or self._expires(key, after) is None else self._index(key, after)
        writes: list[tuple[str, Any]] = []
        if old is not None and old != new:
            writes.append((old, None))
        # PAIRED when the record came matched; one matched later (its "m" rewritten) keeps its
        # entry, as run does (a changelog compacted to the rewrite says PAIRED: the same
        # behaviour, without the read at expiry)
        if new is not None and old != new:
            writes.append((new, PAIRED if key[0] == LEFT and after.get("m") else WAITING))
        return writes

    def _expire(self, table: Table, partition: int, side: str, watermark: int, out: list[Event]) -> None:
        """Forget the records of ``side`` that the other side's time has left behind; a left join
        emits its unmatched left records."""
        start = f"{INDEX}{side}"
        # Read from where the last expiry stopped (or the earliest expiry buffered since, if
        # before it), not from the start: RocksDB's seek walks over every tombstone of the expired
        # entries until a compaction drops them, a walk that grew with the run, per batch.
        done = table.get(EXPIRED + side, partition)
        since = self._low.get((partition, side))
        floor = None if done is None else done if since is None else min(done, since)
        begin = start if floor is None or floor < 0 else f"{start}{floor:015d}"
        emits = self.left_join and side == LEFT  # only then is an entry read, if not PAIRED
        drop = table.drop
        if done is None or watermark > done:
            table.set(EXPIRED + side, watermark, partition)
        found = sorted(table.scan(partition, begin, f"{start}{watermark:015d}"))
        held = self._held_expiry.get(partition) if emits else None
        if held:  # left records not buffered (_left): emitted unmatched in the order of the index
            found = sorted(found + [(index, stored) for index, stored in held], key=lambda f: f[0])
        for index, mark in found:
            if mark.__class__ is dict:  # held: nothing in the table
                if not mark["m"]:
                    out.append(stored_event(mark, self.shape.unmatched(mark["v"])))
                continue
            entry = index.split(INDEX, 2)[2]
            if emits and mark != PAIRED:
                stored = table.get(entry, partition)  # "m": matched, as tables written before say
                if stored is not None and not stored["m"]:
                    out.append(stored_event(stored, self.shape.unmatched(stored["v"])))
            # an entry and its index are written together (_keep) and only dropped together
            drop(entry, partition)
            drop(index, partition)  # the scan found it

    # ------------------------------------------------------------------ emitted records
