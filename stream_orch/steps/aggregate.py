"""``aggregate``: a sliding event-time window per key, attached to each record (rule f).

For a record with time ``t`` the result covers the records of the same key with time in
``(t - window, t]``, this one included: ``count`` of them, or ``sum``/``min``/``max``/``avg``
of their ``field``. Records of a batch are applied in order.

State: ``ctx.table(table)`` maps ``str(record[key])`` to a list of ``[ts, value]`` pairs
(``value`` is null for ``count``), sorted by ``ts``, written back once per key per batch (one
changelog record per key per batch). After each record, pairs with
``ts <= newest - window - grace`` are pruned, where ``newest`` is the newest time seen for the
key and ``grace`` defaults to one window: a record up to ``grace`` late (out of order) still
gets the exact result; a record later than that is counted against what is left.

The table keeps keys that go quiet; :meth:`AggregateStepImpl.prune` (called by the runtime on
a timer, like dedupe's) deletes keys whose newest time is at or before
``watermark - window - grace``.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from typing import Any

from stream_orch.steps.base import Event, StepContext, Table
from stream_orch.steps.common import show


def _ts(pair: list[Any]) -> Any:
    return pair[0]


class AggregateStepImpl:
    def __init__(
        self,
        *,
        table: str,
        key: str,
        window_ms: int,
        function: str = "count",
        field: str | None = None,
        time_field: str = "ts",
        as_: str,
        grace_ms: int | None = None,
        name: str = "aggregate",
    ) -> None:
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
        self.watermarks: dict[int, int] = {}

    async def run(self, events: list[Event], ctx: StepContext) -> list[Event]:
        table = ctx.table(self.table_name)
        get = table.get
        key_field, time_field, value_field = self.key, self.time_field, self.field
        window, keep = self.window_ms, self.window_ms + self.grace_ms
        function, as_ = self.function, self.as_
        is_count = function == "count"
        watermarks = self.watermarks
        touched: dict[tuple[int, str], list[list[Any]]] = {}
        out: list[Event] = []
        append = out.append
        for event in events:
            record = event.value
            key = record.get(key_field)
            if key is None:
                ctx.reject(event, f"missing_field: {key_field} is required to aggregate")
                continue
            t = record.get(time_field)
            if t.__class__ is not int:
                ctx.reject(event, f"invalid_field: {time_field} must be epoch ms (got {show(t)})")
                continue
            value = None
            if not is_count:
                value = record.get(value_field)
                if value.__class__ is not int and value.__class__ is not float:
                    ctx.reject(event, f"invalid_field: {value_field} must be a number (got {show(value)})")
                    continue
            key = key if key.__class__ is str else str(key)
            partition = event.partition
            slot = (partition, key)
            pairs = touched.get(slot)
            if pairs is None:
                stored = get(key, partition)
                # a copy: the stored list changes only through table.set at the end of the batch
                pairs = list(stored) if stored else []
                touched[slot] = pairs
            if not pairs or pairs[-1][0] <= t:
                pairs.append([t, value])
                hi = len(pairs)
            else:
                insort(pairs, [t, value], key=_ts)
                hi = bisect_right(pairs, t, key=_ts)
            lo = bisect_right(pairs, t - window, key=_ts, hi=hi)
            if is_count:
                result: Any = hi - lo
            else:
                values = [p[1] for p in pairs[lo:hi]]
                if function == "sum":
                    result = sum(values)
                elif function == "min":
                    result = min(values)
                elif function == "max":
                    result = max(values)
                else:
                    result = sum(values) / len(values)
            record[as_] = result
            newest = pairs[-1][0]
            if pairs[0][0] <= newest - keep:
                del pairs[: bisect_right(pairs, newest - keep, key=_ts)]
            if newest > watermarks.get(partition, -(2**63)):
                watermarks[partition] = newest
            append(event)
        put = table.set
        for (partition, key), pairs in touched.items():
            put(key, pairs, partition)
        return out

    def prune(self, table: Table, partition: int, watermark_ms: int | None = None) -> int:
        """Delete the keys of ``partition`` with nothing left in the window; returns how many."""
        if watermark_ms is None:
            watermark_ms = self.watermarks.get(partition)
            if watermark_ms is None:
                return 0
        cutoff = watermark_ms - self.window_ms - self.grace_ms
        expired = [key for key, pairs in table.items(partition) if not pairs or pairs[-1][0] <= cutoff]
        for key in expired:
            table.delete(key, partition)
        return len(expired)
