"""``aggregate``: a sliding event-time window per key, attached to each record (rule f).

For a record with time ``t`` the result covers the records of the same key with time in
``(t - window, t]``, this one included: ``count`` of them, or ``sum``/``min``/``max``/``avg``
of their ``field``. Records of a batch are applied in order. With ``when`` only the records for
which it holds enter the window; the others still get the result for their time (over the
records that entered, so it can be an empty window: count and sum 0, min/max/avg null).

State: ``ctx.table(table)`` keeps, per ``str(record[key])`` (escaped by
:mod:`~stream_orch.steps.table_keys`, so a key holding the chunks' separator is not a chunk of
another key), a list of ``[ts, value]`` pairs
(``value`` is null for ``count``; with ``aggregate``, the record's value for each result, and
the results are the window step's functions folded over the entries:
:class:`~stream_orch.steps.window_aggs.Aggregations`), sorted by ``ts``, in records of bounded size
(:mod:`stream_orch.steps.windows`: one record, or chunks of 256 entries for a busy key); an
entry is ``[ts, value, offset]`` when
the event knows its source offset (``event.source_offset``: the input offset, kept through the
retry tiers). The offset makes the step idempotent: an event replayed after a crash between the
changelog write and the offset commit finds its own entry (same ``ts``, same offset, found by
bisection) and gets its result again without being counted twice. The table is split by input
partition and a retried record comes back on the partition it left, so the offset alone
identifies the event within one key's list. Entries are written back once per key per batch:
one changelog record for a key with up to 256 entries, else only the chunks that changed.
After each record, pairs with
``ts <= newest - window - grace`` are pruned, where ``newest`` is the newest time seen for the
key and ``grace`` defaults to one window: a record up to ``grace`` late (out of order) still
gets the exact result; a record later than that is counted against what is left.

An event that passed this step and failed in a later one of the same batch (it goes to a retry
tier or the DLQ, and may come back with a new offset) takes its entry back: the runtime calls
:meth:`AggregateStepImpl.release` with the batch's failed events before the changelog is
written, as it does for dedupe (the :class:`~stream_orch.steps.base.UndoingStep` protocol).
Events of the same batch processed after it have already counted it; their results stand.

When a re-keying node of the topology writes the input (``watermarks: per_source``, the default),
its records arrive up to a batch's span out of order across its source partitions, and pruning by
the key's newest time would drop entries a lagging source's records still need. The partition's
watermark is then the minimum over the writer's source partitions (as for windows:
:mod:`stream_orch.steps.source_watermarks`; a source silent for a minute is left out), and pairs
are pruned no further than ``watermark - window - grace``.

The table keeps keys that go quiet; :meth:`AggregateStepImpl.prune` (called by the runtime on
a timer, like dedupe's) deletes keys whose newest time is at or before
``watermark - window - grace``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from stream_orch.reliability.headers import now_ms
from stream_orch.steps import source_watermarks as sw
from stream_orch.steps import windows
from stream_orch.steps.base import Event, StepContext, Table
from stream_orch.steps.common import StepBuild, Ticks, passed_over_times, show
from stream_orch.steps.table_keys import record_key
from stream_orch.steps.window_aggs import Aggregations
from stream_orch.steps.windows import Window
from stream_orch.topology.models import AggregateStep

# an entry's event time; bisect calls it about log2(n) times per record, and itemgetter is a
# C call where a def cost 0.08 µs more per bisection
_ts = itemgetter(0)


def _has_offset(pairs: list[list[Any]], t: int, offset: int, hi: int) -> bool:
    """Whether an entry at time ``t`` (those end at ``hi``) carries source ``offset``: a replay."""
    i = hi - 1
    while i >= 0 and pairs[i][0] == t:
        pair = pairs[i]
        if len(pair) > 2 and pair[2] == offset:
            return True
        i -= 1
    return False


def _over(function: str, pairs: list[list[Any]], lo: int, hi: int) -> Any:
    """``function`` of the values of ``pairs[lo:hi]`` (count is done inline, on the hot path)."""
    if function == "count":
        return hi - lo
    values = [p[1] for p in pairs[lo:hi]]
    if function == "sum":
        return sum(values)
    if not values:
        return None
    if function == "min":
        return min(values)
    if function == "max":
        return max(values)
    return sum(values) / len(values)


class AggregateStepImpl:
    @classmethod
    def from_spec(cls, spec: AggregateStep, build: StepBuild) -> AggregateStepImpl:
        several = spec.aggregate is not None
        if spec.window is None:
            raise ValueError("a sliding aggregate needs `window` (the running one is RunningAggregateImpl)")
        return cls(
            table=spec.table,
            key=spec.key,
            window_ms=spec.window,
            function=spec.function,
            field=spec.field,
            time_field=spec.time_field,
            as_=spec.as_ or "",
            aggregate=[(n, f, field) for n, (f, field) in spec.results().items()] if several else None,
            when=build.expression(spec.when, "when").fn if spec.when else None,
            name=build.name,
            sources=sw.expected_sources(build.topology, build.node),
            idle_timeout_ms=spec.idle_timeout,
        )

    def __init__(
        self,
        *,
        table: str,
        key: str,
        window_ms: int,
        function: str = "count",
        field: str | None = None,
        time_field: str = "ts",
        as_: str = "",
        aggregate: list[tuple[str, str, str | None]] | None = None,
        grace_ms: int | None = None,
        when: Callable[[dict[str, Any]], Any] | None = None,
        name: str = "aggregate",
        sources: frozenset[str] = frozenset(),
        idle_timeout_ms: int = sw.IDLE_DEFAULT_MS,
        clock: Callable[[], int] | None = None,
    ) -> None:
        # several results (the window step's functions, computed over the sliding window's entries,
        # whose value is then the list of the record's values, one per result): None, one result
        self.several = Aggregations(aggregate, single=False) if aggregate else None
        if not aggregate and not as_:
            raise ValueError("an aggregate needs `as` or `aggregate`")
        if function not in ("count", "sum", "min", "max", "avg"):
            raise ValueError(f"unknown aggregate function {function!r}")
        if function != "count" and not field:
            raise ValueError(f"aggregate function {function!r} needs a field")
        self.name = name
        self.table_name = table
        self.key = key
        self.window_ms = int(window_ms)
        self.grace_ms = self.window_ms if grace_ms is None else int(grace_ms)
        self.function = function
        self.field = field
        self.time_field = time_field
        self.as_ = as_
        self.when = when
        self.watermarks: dict[int, int] = {}
        self._table: Table | None = None
        # a re-keying writer's sources (see the module doc); empty: the key's newest time prunes
        self.sources = sources
        self.idle_ms = int(idle_timeout_ms)
        self.clock = clock or now_ms
        self._heard: dict[int, sw.Sources] = {}  # partition -> source -> [time, heard]
        self._since: dict[int, int] = {}  # partition -> when this worker first read it

    async def run(self, events: list[Event], ctx: StepContext) -> list[Event]:
        table = self._table = ctx.table(self.table_name)
        key_field, time_field, value_field = self.key, self.time_field, self.field
        window, keep = self.window_ms, self.window_ms + self.grace_ms
        function, as_ = self.function, self.as_
        several = self.several
        is_count = function == "count" and several is None
        when = self.when
        watermarks = self.watermarks
        touched: dict[tuple[int, str], Window] = {}
        out: list[Event] = []
        append = out.append
        per_source = bool(self.sources)
        if per_source:
            now = self.clock()
            ticks = passed_over_times(ctx, time_field)
        for event in events:
            record = event.value
            if per_source:
                self._hear(event, ticks.get((event.topic, event.partition)), now)
            key = record.get(key_field)
            if key is None:
                ctx.reject(event, f"missing_field: {key_field} is required to aggregate")
                continue
            t = record.get(time_field)
            if t.__class__ is not int:
                ctx.reject(event, f"invalid_field: {time_field} must be epoch ms (got {show(t)})")
                continue
            if when is not None:
                try:
                    enters = when(record)
                except Exception as exc:
                    ctx.reject(event, f"expression_error: aggregate when: {exc}", exc)
                    continue
                if not enters:  # annotated with the window at its time, not counted in it
                    key = record_key(key)
                    slot = (event.partition, key)
                    win = touched.get(slot)
                    if win is None:
                        win = touched[slot] = windows.load(table, key, event.partition)
                    pairs = win.entries
                    hi = bisect_right(pairs, t, key=_ts)
                    self._result(record, pairs, bisect_right(pairs, t - window, key=_ts, hi=hi), hi)
                    append(event)
                    continue
            value = None
            if several is not None:
                value = several.values(record, "aggregate")
                if value.__class__ is str:
                    ctx.reject(event, value)
                    continue
            elif not is_count:
                value = record.get(value_field)
                if value.__class__ is not int and value.__class__ is not float:
                    ctx.reject(event, f"invalid_field: {value_field} must be a number (got {show(value)})")
                    continue
            # record_key's common case inline (a call a record): printable text is its own key
            key = key if key.__class__ is str and key.isprintable() else record_key(key)
            partition = event.partition
            slot = (partition, key)
            win = touched.get(slot)
            if win is None:
                # a copy: the stored entries change only through windows.save at the end of the batch
                win = touched[slot] = windows.load(table, key, partition)
            pairs = win.entries
            offset = event.source_offset
            entry = [t, value] if offset < 0 else [t, value, offset]
            if not pairs or pairs[-1][0] < t:
                pairs.append(entry)
                hi = len(pairs)
                if win.first_change is None:  # Window.changed_at(hi - 1) inline: an append is last
                    win.first_change = hi - 1 + win.pruned
            else:
                hi = bisect_right(pairs, t, key=_ts)
                if offset < 0 or not _has_offset(pairs, t, offset, hi):
                    pairs.insert(hi, entry)  # after the entries with the same time, as insort does
                    win.changed_at(hi)
                    hi += 1
            lo = bisect_right(pairs, t - window, key=_ts, hi=hi)
            if is_count:
                record[as_] = hi - lo
            else:
                self._result(record, pairs, lo, hi)
            newest = pairs[-1][0]
            if per_source:  # no further than the sources' minimum: a lagging one's records still come
                newest = min(newest, watermarks.get(partition, -1))
            elif newest > watermarks.get(partition, -(2**63)):
                watermarks[partition] = newest
            if pairs[0][0] <= newest - keep:
                win.drop_head(bisect_right(pairs, newest - keep, key=_ts))
            append(event)
        if per_source:
            for (_topic, partition), times in ticks.items():  # after the batch's last record
                self._hear(None, times, now, partition)
        for (partition, _key), win in touched.items():
            windows.save(table, win, partition)
        return out

    def _hear(self, event: Event | None, times: Ticks | None, now: int, partition: int = -1) -> None:
        """Per-source watermarks: the records an earlier step let go before ``event`` (all of
        ``times`` for None), then ``event``, move their sources; the partition's watermark is the
        minimum over them. Kept in memory only: after a restart it starts again from the
        expected sources, which prunes less until they are heard from, never more."""
        if event is not None:
            partition = event.partition
        sources = self._heard.get(partition)
        if sources is None:
            self._since.setdefault(partition, now)
            sources = self._heard[partition] = {src: [-1, now] for src in self.sources}
        moved = False
        if times:
            n = 0
            for offset, t, passed in times:
                if event is not None and offset >= event.offset:
                    break
                n += 1
                moved = sw.hear(sources, passed.headers, t, now, self.idle_ms) or moved
            del times[:n]
        if event is not None:
            t = event.value.get(self.time_field)
            t = t if t.__class__ is int else -1
            moved = sw.hear(sources, event.headers, t, now, self.idle_ms) or moved
        least = sw.minimum(sources, now, self._since[partition], self.idle_ms)
        if least is not None and least > self.watermarks.get(partition, -1):
            self.watermarks[partition] = least

    def _result(self, record: dict[str, Any], pairs: list[list[Any]], lo: int, hi: int) -> None:
        """The results over ``pairs[lo:hi]`` into the record."""
        if self.several is None:
            record[self.as_] = _over(self.function, pairs, lo, hi)
        else:
            record.update(self.several.over(pairs[lo:hi]))

    def release(self, failed: list[Event]) -> int:
        """Take the entries of ``failed`` events out of their windows; returns how many were found.

        An entry is found by its time and source offset (the coordinates an event keeps through
        the retry tiers), or by time and value for an event without an offset. Failures are
        rare, so the cost (a window load per failed event's key) is paid only then; an event
        this step never counted (rejected here, or failed before it) matches no entry."""
        table = self._table
        if not failed or table is None:
            return 0
        wanted: dict[tuple[int, str], list[Event]] = {}
        for event in failed:
            key, t = event.value.get(self.key), event.value.get(self.time_field)
            if key is not None and t.__class__ is int:
                slot = (event.partition, record_key(key))
                wanted.setdefault(slot, []).append(event)
        removed = 0
        for (partition, key), evs in wanted.items():
            win = windows.load(table, key, partition)
            found = [i for i in (self._entry_of(win.entries, e) for e in evs) if i is not None]
            for i in sorted(set(found), reverse=True):
                win.remove(i)
            if found:
                windows.save(table, win, partition)
                removed += len(set(found))
        return removed

    def _entry_of(self, pairs: list[list[Any]], event: Event) -> int | None:
        t, offset = event.value[self.time_field], event.source_offset
        if self.several is not None:
            value = self.several.values(event.value, "aggregate")
        else:
            value = None if self.function == "count" else event.value.get(self.field or "")
        i = bisect_right(pairs, t, key=_ts) - 1
        while i >= 0 and pairs[i][0] == t:
            pair = pairs[i]
            if pair[2] == offset if len(pair) > 2 else offset < 0 and pair[1] == value:
                return i
            i -= 1
        return None

    def prune(self, table: Table, partition: int, watermark_ms: int | None = None) -> int:
        """Delete the keys of ``partition`` with nothing left in the window; returns how many."""
        if watermark_ms is None:
            watermark_ms = self.watermarks.get(partition)
            if watermark_ms is None:
                return 0
        cutoff = watermark_ms - self.window_ms - self.grace_ms
        expired = []
        for key, head in table.items(partition):
            if windows.is_chunk(key):
                continue
            newest = windows.newest_of(head)
            if newest is None or newest <= cutoff:
                expired.append(key)
        for key in expired:
            win = windows.load(table, key, partition)
            win.entries.clear()
            windows.save(table, win, partition)  # the key's record and its chunks, deleted
        return len(expired)
