"""``lookup_many``: one table lookup per element of a list field, the elements kept into a field.

For each element ``item`` of ``record[each]`` the key is the ``key`` expression over the record
and ``item``; the row ``ctx.table(table).get(key, event.partition)`` (a global table, or a fed
table read whole, ignores the partition) keeps the element when it exists, is a record, and
``keep`` (an expression over the row) holds. ``as`` receives the elements kept, in the list's
order. The inventory's use: the substitutes of a product that the same store has in stock
(``key: store_id + ':' + item``, ``keep: level > 0``).

Untrusted values: a record whose ``each`` is missing or not a list, or whose key expression fails
for an element, goes to the DLQ with the reason; a row that is not a record, or on which ``keep``
fails (a field missing or of another type), leaves its element out, as a missing row does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stream_orch.steps.base import Event, StepContext
from stream_orch.steps.common import StepBuild, show
from stream_orch.topology.models_lookup import ITEM, LookupManyStep

Compiled = Callable[[dict[str, Any]], Any]


class LookupManyStepImpl:
    @classmethod
    def from_spec(cls, spec: LookupManyStep, build: StepBuild) -> LookupManyStepImpl:
        return cls(
            table=spec.table,
            each=spec.each,
            key=build.expression(spec.key, "key").fn,
            keep=build.expression(spec.keep, "keep").fn if spec.keep else None,
            as_=spec.as_,
            name=build.name,
        )

    def __init__(
        self,
        *,
        table: str,
        each: str,
        key: Compiled,
        keep: Compiled | None,
        as_: str,
        name: str = "lookup_many",
    ) -> None:
        self.name = name
        self.table_name = table
        self.each = each
        self.key = key
        self.keep = keep
        self.as_ = as_

    async def run(self, events: list[Event], ctx: StepContext) -> list[Event]:
        get = ctx.table(self.table_name).get
        each, key_of, keep = self.each, self.key, self.keep
        out: list[Event] = []
        for event in events:
            record = event.value
            items = record.get(each)
            if items.__class__ is not list:
                what = "missing_field" if items is None else "invalid_field"
                ctx.reject(
                    event, f"{what}: {each} must be a list to look up {self.table_name} (got {show(items)})"
                )
                continue
            kept: list[Any] = []
            scope = dict(record)
            try:
                for item in items:
                    scope[ITEM] = item
                    key = key_of(scope)
                    row = get(key if key.__class__ is str else str(key), event.partition)
                    if row.__class__ is dict and (keep is None or _holds(keep, row)):
                        kept.append(item)
            except Exception as exc:
                ctx.reject(event, f"expression_error: lookup_many key: {exc}", exc)
                continue
            record[self.as_] = kept
            out.append(event)
        return out


def _holds(keep: Compiled, row: dict[str, Any]) -> bool:
    try:
        return bool(keep(row))
    except Exception:  # a row of another shape (untrusted topic bytes): not kept, as no row
        return False
