"""``aggregate`` without ``window``: a running aggregate per key (Kafka Streams' KTable aggregate).

The table keeps ONE value per key (``str(record[key])``, escaped by
:mod:`~stream_orch.steps.table_keys`): ``{"n": <records counted>, "a": <accumulator>}``, the
window step's accumulators (:mod:`~stream_orch.steps.window_aggs`: a sum, a min, a
``[0, value]`` for first/last), so its size does not grow with the key's records. Each record
is folded in, in arrival order, and receives the result so far (its own value included). Records
of a batch are applied in order; a key's value is written once per batch (one changelog record),
and lands with the batch's outputs and offsets (the table's overlay: a failed batch leaves
nothing). With ``when`` only the records for which it holds are counted; the others still get
the key's result.

Replays: nothing in the value says which records it counted. Under ``exactly_once`` the value,
the outputs and the offsets are one transaction, so a batch replayed after a crash starts from
the value before it and counts once. Under ``at_least_once`` a batch whose changelog was written
but whose offsets were not is read and counted again, as in Kafka Streams.

A table a sliding ``aggregate`` of the same key wrote (the topology changed from a window to a
running aggregate, as the inventory's level did) is taken over: a key whose stored value is a
window's (:mod:`~stream_orch.steps.windows`: its entries, perhaps in chunks) is folded into one
value, its entries in time order, and its records are replaced by that value in the batch's
changelog; what the window had pruned is not in it. A stored value neither form reads (another
step's, or entries of another shape) rejects the record with ``state_mismatch``: give the running
aggregate a table of its own.

An event that passed this step and failed in a later one of the same batch (a retry tier or the
DLQ) takes its part back: the step remembers, per key touched in the batch, the value before the
batch and the values it folded in; :meth:`RunningAggregateImpl.release` folds them again without
the failed ones (accumulators such as min and last cannot be subtracted). Events of the batch
processed after it have already counted it; their results stand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stream_orch.steps import windows
from stream_orch.steps.base import Event, StepContext, Table
from stream_orch.steps.common import StepBuild
from stream_orch.steps.table_keys import record_key
from stream_orch.steps.window_aggs import Aggregations, copy
from stream_orch.topology.models import AggregateStep

_Id = tuple[str, int, int]  # an event's topic, partition, offset in the batch
_Slot = tuple[int, str]  # partition, table key


class RunningAggregateImpl:
    @classmethod
    def from_spec(cls, spec: AggregateStep, build: StepBuild) -> RunningAggregateImpl:
        return cls(
            table=spec.table,
            key=spec.key,
            results=list((n, f, field) for n, (f, field) in spec.results().items()),
            single=spec.aggregate is None,
            when=build.expression(spec.when, "when").fn if spec.when else None,
            name=build.name,
        )

    def __init__(
        self,
        *,
        table: str,
        key: str,
        results: list[tuple[str, str, str | None]],
        single: bool = True,
        when: Callable[[dict[str, Any]], Any] | None = None,
        name: str = "aggregate",
    ) -> None:
        self.name = name
        self.table_name = table
        self.key = key
        self.aggs = Aggregations(results, single=single)
        self.when = when
        self._table: Table | None = None
        # this batch: per key touched, the value before it and the (event, value) folded in
        self._batch: dict[_Slot, tuple[dict[str, Any] | None, list[tuple[_Id, Any]]]] = {}

    def _values(self, record: dict[str, Any]) -> Any:
        """The record's value (a list, one per result, for several), or why it is rejected."""
        aggs = self.aggs
        values = aggs.values(record, "aggregate")
        if values.__class__ is str or not aggs.single:
            return values
        return values[0]

    def _start(self, stored: dict[str, Any] | None) -> dict[str, Any]:
        """A copy to fold into (the stored value changes only through ``table.set``)."""
        if stored is None:
            return {"n": 0, "a": self.aggs.empty()}
        return {"n": stored["n"], "a": copy(stored["a"])}

    def _load(self, table: Table, key: str, partition: int) -> dict[str, Any] | str | None:
        """The key's stored value; a sliding window's folded into one (its records deleted in this
        batch); or why it cannot be read."""
        stored = table.get(key, partition)
        if stored is None or (stored.__class__ is dict and "a" in stored and "n" in stored):
            return stored
        head = stored.__class__ is dict and ("e" in stored or "ids" in stored)  # a window's record
        if not (head or stored.__class__ is list):
            return f"state_mismatch: table {self.table_name} holds another step's value for this key"
        win = windows.load(table, key, partition)
        acc = self._start(None)
        several, functions = not self.aggs.single, self.aggs.functions
        for entry in win.entries:
            value = entry[1]
            if several:
                fits = value.__class__ is list and len(value) == len(functions)
            else:
                fits = value.__class__ is not list and (value is not None or functions[0] == "count")
            if not fits:
                return f"state_mismatch: table {self.table_name} holds a window of other results"
            self.aggs.add(acc, value, 0)  # time order; 0 as for every record (first/last: by arrival)
        win.entries.clear()
        windows.save(table, win, partition)  # the key's window records, deleted
        return acc

    async def run(self, events: list[Event], ctx: StepContext) -> list[Event]:
        table = self._table = ctx.table(self.table_name)
        aggs, when, key_field, batch = self.aggs, self.when, self.key, self._batch
        touched: dict[_Slot, dict[str, Any]] = {}
        out: list[Event] = []
        for event in events:
            record = event.value
            raw = record.get(key_field)
            if raw is None:
                ctx.reject(event, f"missing_field: {key_field} is required to aggregate")
                continue
            counted = True
            if when is not None:
                try:
                    counted = bool(when(record))
                except Exception as exc:
                    ctx.reject(event, f"expression_error: aggregate when: {exc}", exc)
                    continue
            value = None
            if counted:
                value = self._values(record)
                if value.__class__ is str:
                    ctx.reject(event, value)
                    continue
            slot = (event.partition, record_key(raw))
            acc = touched.get(slot)
            if acc is None:
                stored = self._load(table, slot[1], slot[0])
                if stored.__class__ is str:
                    ctx.reject(event, stored)
                    continue
                if slot not in batch:
                    batch[slot] = (stored, [])
                acc = touched[slot] = self._start(stored)
            if counted:
                aggs.add(acc, value, 0)  # time 0: first keeps the first arrival, last the latest
                batch[slot][1].append(((event.topic, event.partition, event.offset), value))
            record.update(aggs.results(acc))
            out.append(event)
        for (partition, key), acc in touched.items():
            table.set(key, acc, partition)
        return out

    def release(self, failed: list[Event]) -> int:
        """Fold each key touched by a failed event again from its value before the batch, without
        the failed events, and forget the batch; returns how many events were taken back."""
        batch, self._batch = self._batch, {}
        table = self._table
        if not failed or not batch or table is None:
            return 0
        gone = {(e.topic, e.partition, e.offset) for e in failed}
        removed = 0
        for (partition, key), (before, folded) in batch.items():
            kept = [(i, v) for i, v in folded if i not in gone]
            if len(kept) == len(folded):
                continue
            removed += len(folded) - len(kept)
            acc = self._start(before)
            for _i, value in kept:
                self.aggs.add(acc, value, 0)
            if before is None and not kept:
                table.delete(key, partition)
            else:
                table.set(key, acc, partition)
        return removed
