"""``enrich``: copy fields of a table row (looked up by a field of the record) into the record.

``row = ctx.table(table).get(str(record[key]), event.partition)`` (a global table ignores the
partition). The ``fields`` listed (all of the row's when unset) are copied as
``prefix + field``; a field the row lacks is taken from ``defaults`` when it has it, else left
out. With no row, ``on_missing`` decides:

* ``drop``: ``ctx.drop(event, "missing_row")``;
* ``default``: the ``defaults`` are used as the row;
* ``retry``: ``ctx.retry(event, missing_reason or "unknown_<key without _id>")``, e.g.
  ``unknown_customer``: the runtime sends it through the retry tiers, then the DLQ.

A record without the key field goes to ``ctx.reject`` (``missing_field``). Records are changed
in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import islice
from typing import Any

from stream_orch.steps.base import Event, StepContext, WholeRowsTable
from stream_orch.steps.common import StepBuild, show
from stream_orch.topology.models import EnrichStep

_KEPT = 32_768  # keys whose copied fields are kept (then the older half is forgotten)


class EnrichStepImpl:
    @classmethod
    def from_spec(cls, spec: EnrichStep, build: StepBuild) -> EnrichStepImpl:
        return cls(
            table=spec.table,
            key=spec.key,
            fields=spec.fields,
            prefix=spec.prefix,
            on_missing=spec.on_missing,
            defaults=spec.defaults,
            missing_reason=spec.missing_reason,
            name=build.name,
        )

    def __init__(
        self,
        *,
        table: str,
        key: str,
        fields: list[str] | None = None,
        prefix: str = "",
        on_missing: str = "retry",
        defaults: dict[str, Any] | None = None,
        missing_reason: str | None = None,
        name: str = "enrich",
    ) -> None:
        self.name = name
        self.table_name = table
        self.key = key
        self.on_missing = on_missing
        self.defaults = dict(defaults or {})
        self.missing_reason = missing_reason or f"unknown_{key.removesuffix('_id')}"
        self.prefix = prefix
        self._pairs = None if fields is None else tuple((f, prefix + f) for f in fields)
        # a topic-fed table's row is replaced whole, never changed in place (TopicRows.rows): the
        # fields copied from it are kept per key with the row they came from, and copied with
        # one update while the key holds that row (one lookup and a C call instead of two dict
        # lookups and a store per field)
        self._kept: dict[str, tuple[Any, dict[str, Any]]] = {}

    async def run(self, events: list[Event], ctx: StepContext) -> list[Event]:
        table = ctx.table(self.table_name)
        if isinstance(table, WholeRowsTable) and self._pairs is not None:
            return self._run_kept(events, ctx, table.rows)
        get = table.get
        key_field, pairs, prefix = self.key, self._pairs, self.prefix
        defaults, on_missing = self.defaults, self.on_missing
        out: list[Event] = []
        append = out.append
        for event in events:
            record = event.value
            key = record.get(key_field)
            if key is None:
                ctx.reject(event, f"missing_field: {key_field} is required to look up {self.table_name}")
                continue
            row = get(key if key.__class__ is str else str(key), event.partition)
            if row is None:
                if on_missing == "retry":
                    ctx.retry(event, self.missing_reason)
                    continue
                if on_missing == "drop":
                    ctx.drop(event, "missing_row")
                    continue
                row = defaults
            elif row.__class__ is not dict:
                ctx.reject(event, f"enrich_error: the {self.table_name} row of {show(key)} is not a record")
                continue
            if pairs is None:
                if prefix:
                    for f, v in row.items():
                        record[prefix + f] = v
                else:
                    record.update(row)
            else:
                for src, dst in pairs:
                    if src in row:
                        record[dst] = row[src]
                    elif src in defaults:
                        record[dst] = defaults[src]
            append(event)
        return out

    def _copied(self, row: dict[str, Any]) -> dict[str, Any]:
        """What the loop of :meth:`run` would copy from ``row``, in its order."""
        defaults = self.defaults
        out: dict[str, Any] = {}
        for src, dst in self._pairs or ():
            if src in row:
                out[dst] = row[src]
            elif src in defaults:
                out[dst] = defaults[src]
        return out

    def _run_kept(self, events: list[Event], ctx: StepContext, rows: Mapping[str, Any]) -> list[Event]:
        """:meth:`run` over a topic-fed table's rows: the same records, rejections and retries."""
        key_field, on_missing, kept = self.key, self.on_missing, self._kept
        get, known = rows.get, kept.get
        out: list[Event] = []
        append = out.append
        for event in events:
            record = event.value
            key = record.get(key_field)
            if key is None:
                ctx.reject(event, f"missing_field: {key_field} is required to look up {self.table_name}")
                continue
            text = key if key.__class__ is str else str(key)
            row = get(text)
            hit = known(text)
            if hit is None or hit[0] is not row:
                if row is None:
                    if on_missing == "retry":
                        ctx.retry(event, self.missing_reason)
                        continue
                    if on_missing == "drop":
                        ctx.drop(event, "missing_row")
                        continue
                    record.update(self._copied(self.defaults))
                    append(event)
                    continue
                if row.__class__ is not dict:
                    reason = f"enrich_error: the {self.table_name} row of {show(key)} is not a record"
                    ctx.reject(event, reason)
                    continue
                if len(kept) >= _KEPT:
                    _forget_older_half(kept)
                hit = kept[text] = (row, self._copied(row))
            record.update(hit[1])
            append(event)
        return out


def _forget_older_half(kept: dict[str, Any]) -> None:
    # dicts keep insertion order: the first half are the keys seen longest ago
    for key in list(islice(kept, len(kept) // 2)):
        del kept[key]
