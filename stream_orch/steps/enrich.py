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

from typing import Any

from stream_orch.steps.base import Event, StepContext
from stream_orch.steps.common import StepBuild, show
from stream_orch.topology.models import EnrichStep


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

    async def run(self, events: list[Event], ctx: StepContext) -> list[Event]:
        table = ctx.table(self.table_name)
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
