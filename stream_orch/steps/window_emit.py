"""``window``: tumbling, hopping and session windows per key that emit their results as records.

The step *replaces* the stream: the records it reads are absorbed (counted as dropped with
``windowed``) and what goes on to the routes are window results, one record
``{<key>: key, window_start, window_end, <as>: result}`` (epoch ms; with ``aggregate`` one
field per result) per window: once, when the
window closes (``emit: on_close``), or every time a record changes it (``emit: on_update``).

Windows (``t`` is a record's event time, epoch ms, from ``time_field``; negative times are
invalid):

- tumbling: ``[s, s + size)`` with ``s`` a multiple of ``size``; a record is in one window.
- hopping: ``[s, s + size)`` for every multiple ``s >= 0`` of ``advance`` with ``s <= t < s + size``.
- session: per key, records whose times are at most ``gap`` apart belong to one session (Kafka
  Streams' rule: a record exactly ``gap`` after the last one joins it); ``window_start`` and
  ``window_end`` are the times of its first and last record (both included). A record within
  ``gap`` of two open sessions merges them.

Watermark and closing: each input partition has a watermark, the greatest event time of the
records it has read (records from the retry tiers count too, and so do the records an earlier step
of the node let go: filtered, duplicate, see :data:`~stream_orch.steps.base.PASSED_OVER`; those at
their offset's place, so a record is judged with the watermark of the records before it whatever
the batches). A tumbling or hopping window closes when ``watermark >= window_end + grace``; a
session when ``watermark > last record's time + gap + grace`` (so a record exactly ``gap`` after
it, arriving as the newest, still finds it open; Kafka Streams' rules for both). Whether a record
finds its window open is decided with the watermark *at that record* (so results do not depend on
where batches begin); closed windows are emitted (on_close) and deleted at the end of the batch,
in the same batch as the records that closed them. Event time moves only with records: a partition
that receives nothing more keeps its last windows open, unless the node has ``punctuate``: a
punctuation record (a watermark record with ``so.punct: <wall clock - lateness>``, written by the
worker to a partition idle for ``punctuate.every``) moves the partition's watermark to its time.

Re-keyed input: when another node of the topology writes the input (and the node has
``watermarks: per_source``, the default), the partition's watermark is instead the minimum over
that writer's source partitions of the greatest time each has reached, read from the ``so.wm``
headers and watermark records the writer adds; a source silent for ``idle_timeout`` is left out
(:mod:`stream_orch.steps.source_watermarks`). The rules above then hold with that watermark.

Late records: a record none of whose windows is open is late (a hopping record whose oldest
windows closed still enters the open ones, and is not late). A record for a session is late when
it joins no open session and ``t + gap + grace < watermark``; one that would have joined a
session already closed, but is not late by that rule, starts a new session. ``late: drop`` counts
it as dropped with ``late_event``; ``late: dlq`` dead-letters it with reason ``late_event``.

Results: with ``as``, one function: count (int); sum (int while the values are ints, else
float); min, max (numbers); avg (float); first, last (the value of the record with the least,
greatest time); latest (as last); collect (the values in arrival order, at most
:data:`COLLECT_MAX`; a merged session lists the earlier session's first); count_distinct (how many
distinct values). With ``aggregate``, several of them, each under its own name: the result record
is ``{<key>, window_start, window_end, <name>: result, ...}``. Every function but count reads a
field; a record without one of them, or with a non-number for sum/min/max/avg, is rejected
(``missing_field`` / ``invalid_field``) and counts in no window. The accumulators are in
:mod:`stream_orch.steps.window_aggs`.

State, in the node's table (partitioned like the input; the changelog goes with the batch, in its
transaction under exactly_once), see :mod:`stream_orch.steps.window_state`: one record per open
tumbling or hopping window, keyed by its close time so that closing reads only the expired key
range; for sessions one record per key with its open sessions plus a time index; and per
partition the watermark and, per topic read, the next offset not yet applied. That offset makes
a replay harmless: after an at_least_once crash between the changelog write and the offset
commit, records already applied are skipped (dropped as ``replayed``), so no record is counted
twice. A window can still be emitted twice under at_least_once (the outputs were written, the
changelog was not); under exactly_once the emission, the state deletion and the offsets are one
transaction, so each window is emitted once across a kill -9.

No undo (:class:`~stream_orch.steps.base.UndoingStep`): a record this step reads never reaches a
later step, so it cannot fail after being counted, and a result that fails later (routing,
a later step) goes to the DLQ as itself without touching the state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from stream_orch.reliability.headers import punctuation_time
from stream_orch.steps import source_watermarks as sw
from stream_orch.steps import window_state as ws
from stream_orch.steps.base import Event, StepContext, Table
from stream_orch.steps.common import StepBuild, Ticks, passed_over_times, show
from stream_orch.steps.window_aggs import NUMERIC, Aggregations
from stream_orch.topology.models import WindowStep

COLLECT_MAX = ws.COLLECT_MAX


class WindowStepImpl:
    @classmethod
    def from_spec(cls, spec: WindowStep, build: StepBuild) -> WindowStepImpl:
        return cls(
            table=spec.table,
            key=spec.key,
            kind=spec.kind,
            as_=spec.as_,
            size_ms=spec.size,
            advance_ms=spec.advance,
            gap_ms=spec.gap,
            grace_ms=spec.grace,
            function=spec.function,
            field=spec.field,
            aggregate=spec.results() if spec.aggregate is not None else None,
            time_field=spec.time_field,
            emit=spec.emit,
            late=spec.late,
            name=build.name,
            sources=sw.expected_sources(build.topology, build.node),
            idle_timeout_ms=spec.idle_timeout,
        )

    def __init__(
        self,
        *,
        table: str,
        key: str,
        kind: str,
        as_: str | None = None,
        size_ms: int | None = None,
        advance_ms: int | None = None,
        gap_ms: int | None = None,
        grace_ms: int = 0,
        function: str = "count",
        field: str | None = None,
        aggregate: dict[str, tuple[str, str | None]] | None = None,
        time_field: str = "ts",
        emit: str = "on_close",
        late: str = "drop",
        name: str = "window",
        sources: frozenset[str] | None = None,
        idle_timeout_ms: int = 60_000,
        clock: Callable[[], int] | None = None,
    ) -> None:
        if kind not in ("tumbling", "hopping", "session"):
            raise ValueError(f"unknown window kind {kind!r}")
        if (aggregate is None) == (as_ is None):
            raise ValueError("a window takes either `as` (one function) or `aggregate` (several)")
        if aggregate is not None:
            if not aggregate:
                raise ValueError("`aggregate` needs at least one name")
            specs = [(n, function_, field_) for n, (function_, field_) in aggregate.items()]
            self.aggs = Aggregations(specs, single=False)
        else:
            self.aggs = Aggregations([(as_ or "", function, field)], single=True)
        self._add = self.aggs.add
        if kind == "session":
            if not gap_ms or gap_ms <= 0:
                raise ValueError("a session window needs gap > 0")
        else:
            if not size_ms or size_ms <= 0:
                raise ValueError(f"a {kind} window needs size > 0")
            advance_ms = size_ms if kind == "tumbling" else advance_ms
            if not advance_ms or not 0 < advance_ms <= size_ms:
                raise ValueError("a hopping window needs 0 < advance <= size")
        if grace_ms < 0:
            raise ValueError("grace cannot be negative")
        self.name = name
        self.table_name = table
        self.key = key
        self.kind = kind
        self.size_ms = size_ms or 0
        self.advance_ms = advance_ms or 0
        self.gap_ms = gap_ms or 0
        self.grace_ms = grace_ms
        self.function = function
        self.field = field
        self.time_field = time_field
        self.on_update = emit == "on_update"
        self.late_to_dlq = late == "dlq"
        self.as_ = as_
        # per-source watermarks: the writer's sources (None: the greatest time read, per partition)
        self.sources = sources or None
        self.idle_ms = idle_timeout_ms
        self.clock = clock or _now_ms
        self._since: dict[int, int] = {}  # partition -> when this worker first ran it

    # ------------------------------------------------------------------ one batch

    async def run(self, events: list[Event], ctx: StepContext) -> list[Event]:
        """Apply the batch's records to their windows, then close what the watermark passed.

        Nothing is written to the table until every record is applied: a step that raises
        leaves no trace, and the runtime's one-by-one retry of the batch counts nothing twice."""
        table = ctx.table(self.table_name)
        parts: dict[int, ws.PartitionState] = {}
        out: list[Event] = []
        key_field, time_field, value_field = self.key, self.time_field, self.field
        multi = not self.aggs.single
        counted = self.function != "count"
        session = self.kind == "session"
        ticks = passed_over_times(ctx, time_field)
        per_source = self.sources is not None
        now = self.clock()
        for event in events:
            partition = event.partition
            part = parts.get(partition)
            if part is None:
                part = parts[partition] = self._load(table, partition, now)
            if ticks:
                self._tick(part, ticks.get((event.topic, partition)), event.offset, now)
            if part.replayed(event):
                ctx.drop(event, "replayed")
                continue
            record = event.value
            key = record.get(key_field)
            if key is None:
                ctx.reject(event, f"missing_field: {key_field} is required to window")
                continue
            t = record.get(time_field)
            if t.__class__ is not int or t < 0:
                ctx.reject(event, f"invalid_field: {time_field} must be epoch ms (got {show(t)})")
                continue
            value: Any = None
            if multi:
                value = self._values(event, record, ctx)
                if value is None:
                    continue
            elif counted:
                value = record.get(value_field)
                if value is None:
                    ctx.reject(event, f"missing_field: {value_field} is required to window")
                    continue
                if self.function in NUMERIC and value.__class__ is not int and value.__class__ is not float:
                    ctx.reject(event, f"invalid_field: {value_field} must be a number (got {show(value)})")
                    continue
            if per_source:
                self._heard(part, event, t, now)
            elif t > part.watermark:
                part.watermark = t
            part.trigger = event
            keystr = key if key.__class__ is str else str(key)
            if session:
                changed = self._session(table, part, key, keystr, t, value)
            else:
                changed = self._fixed(table, part, key, keystr, t, value)
            if not changed:
                self._late(event, t, part.watermark, ctx)
                continue
            ctx.drop(event, "windowed")
            if self.on_update:
                out.extend(self._result(w, event) for w in changed)
        for (_topic, partition), times in ticks.items():  # what is left: after the batch's last record
            part = parts.get(partition)
            if part is None:
                part = parts[partition] = self._load(table, partition, now)
            self._tick(part, times, None, now)
        for partition, part in parts.items():
            if per_source:
                self._settle(part, now)  # a source that fell silent no longer holds it
            closed = part.close_sessions(table, self._close_of) if session else part.close_fixed(table)
            if not self.on_update and closed:
                closed.sort(key=lambda w: (w["e"], w["s"], str(w["k"])))
                out.extend(self._result(w, part.trigger) for w in closed)
            part.save(table, partition, self._close_of)
        return out

    def _tick(self, part: ws.PartitionState, times: Ticks | None, before: int | None, now: int) -> None:
        """Let the times of records an earlier step dropped, from offsets below ``before`` (all:
        None), move the partition's watermark, in offset order: a record is judged with the
        watermark at it whatever step let the records before it go."""
        if not times:
            return
        n = 0
        for offset, t, event in times:
            if before is not None and offset >= before:
                break
            n += 1
            if t < 0 and (punct := punctuation_time(event.headers)) is not None:
                # the wall clock says no record older than this comes (the node's `punctuate`):
                # every source of the partition is past it, whatever each was heard at
                if punct > part.watermark:
                    part.watermark = punct
                    part.trigger = event
                continue
            if self.sources is not None:
                self._heard(part, event, t, now)
            elif t > part.watermark:
                part.watermark = t
            part.trigger = event  # results closed by it go out with the partition's batch
        del times[:n]

    def _load(self, table: Table, partition: int, now: int) -> ws.PartitionState:
        part = ws.PartitionState.load(table, partition)
        if self.sources is not None:
            self._since.setdefault(partition, now)
            for src in self.sources:  # expected from the start: not heard from yet holds it
                part.sources.setdefault(src, [-1, now])
        return part

    def _heard(self, part: ws.PartitionState, event: Event, t: int, now: int) -> None:
        """A record (or a watermark record: ``t`` -1) from its source: that source's time moves,
        and the partition's watermark with the minimum over the sources."""
        if sw.hear(part.sources, event.headers, t, now, self.idle_ms):
            self._settle(part, now)

    def _settle(self, part: ws.PartitionState, now: int) -> None:
        least = sw.minimum(part.sources, now, self._since.get(part.partition, now), self.idle_ms)
        if least is not None and least > part.watermark:
            part.watermark = least

    def _values(self, event: Event, record: dict[str, Any], ctx: StepContext) -> list[Any] | None:
        """The record's value for each function of ``aggregate``; None: rejected (its field is
        missing, or not a number for sum/min/max/avg)."""
        values = self.aggs.values(record, "window")
        if values.__class__ is str:
            ctx.reject(event, values)
            return None
        return values

    def _fixed(
        self, table: Table, part: ws.PartitionState, key: Any, keystr: str, t: int, value: Any
    ) -> list[dict[str, Any]]:
        """Add the record to each of its open windows; returns them (none: the record is late)."""
        size, advance, grace = self.size_ms, self.advance_ms, self.grace_ms
        watermark = part.watermark
        changed = []
        start = t - t % advance
        while start > t - size and start >= 0:
            close = start + size + grace
            if close > watermark:
                table_key = ws.fixed_key(close, start, keystr)
                win = part.window(table, table_key)
                if win is None:
                    win = part.new_window(table_key, key, start, start + size, self.aggs.empty())
                self._add(win, value, t)
                changed.append(win)
            start -= advance
        return changed

    def _close_of(self, session: list[Any]) -> int:
        """The watermark at which a session closes: the first past its last time + gap + grace."""
        return session[1] + self.gap_ms + self.grace_ms + 1

    def _session(
        self, table: Table, part: ws.PartitionState, key: Any, keystr: str, t: int, value: Any
    ) -> list[dict[str, Any]]:
        """Add the record to its session (new, extended or merged); returns it, or none: late."""
        gap, watermark = self.gap_ms, part.watermark
        entry = part.sessions(table, key, keystr)
        hits = [
            s for s in entry["w"] if s[0] - gap <= t <= s[1] + gap and self._close_of(s) > watermark
        ]  # an open session at most gap from t
        if not hits and t + gap + self.grace_ms < watermark:
            return []
        if hits:
            merged = [*hits[0]]
            for s in hits[1:]:  # in start order: an earlier session's collected values come first
                merged = self.aggs.merge(merged, s)
            entry["w"] = [s for s in entry["w"] if not any(s is h for h in hits)]
            merged[0], merged[1] = min(merged[0], t), max(merged[1], t)
        else:
            merged = [t, t, 0, self.aggs.empty()]
        win = {"k": key, "s": merged[0], "e": merged[1], "n": merged[2], "a": merged[3]}
        self.aggs.add(win, value, t)
        entry["w"].append([win["s"], win["e"], win["n"], win["a"]])
        entry["w"].sort(key=lambda s: s[0])
        return [win]

    def _late(self, event: Event, t: int, watermark: int, ctx: StepContext) -> None:
        if self.late_to_dlq:
            ctx.reject(
                event,
                f"late_event: {self.time_field} {t} is past its window's close (watermark {watermark}, "
                f"grace {self.grace_ms} ms)",
            )
        else:
            ctx.drop(event, "late_event")

    def _result(self, win: dict[str, Any], trigger: Event) -> Event:
        """A window result as an event of the partition whose records made it: it goes out in
        that partition's batch (and transaction), with the lineage of the record that closed or
        changed it. Its timestamp is the window's end, but never later than that record's: event
        time is a record's field (untrusted), and the broker refuses timestamps too far ahead of
        its clock (Kafka 4: one hour), which would fail the batch again at every try."""
        value = {
            self.key: win["k"],
            "window_start": win["s"],
            "window_end": win["e"],
            **self.aggs.results(win),
        }
        k = win["k"]
        return Event(
            value,
            (k if k.__class__ is str else str(k)).encode(),
            orjson.dumps(value),  # what a dead letter of this result carries
            [],
            trigger.topic,
            trigger.partition,
            trigger.offset,
            min(win["e"], trigger.timestamp) if trigger.timestamp else win["e"],
            0,
            trigger.source_topic,
            trigger.source_partition,
            trigger.source_offset,
        )


def _now_ms() -> int:
    return int(time.time() * 1000)
