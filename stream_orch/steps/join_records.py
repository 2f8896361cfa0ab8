"""What the join emits and keeps of a record (:mod:`stream_orch.steps.join`): a match merged, an
unmatched left record with the other side's declared fields null, a right record's kept fields,
and a buffered left record back as the event it came in as."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import orjson

from stream_orch.steps.base import Event
from stream_orch.steps.join_layout import MATCHED, UNMATCHED


def _copier() -> Callable[[Event, dict[str, Any]], Event]:
    """``with_value(event, value)`` as one generated call, a third of its cost: the
    arguments are Event's fields in order, so a field added to it later is copied too."""
    args = ", ".join("value" if f.name == "value" else f"e.{f.name}" for f in dataclasses.fields(Event))
    scope: dict[str, Any] = {"Event": Event}
    exec(f"def with_value(e, value):\n    return Event({args})\n", scope)
    return scope["with_value"]  # type: ignore[no-any-return]


with_value = _copier()


@dataclasses.dataclass(frozen=True)
class Shape:
    """The step's output shape: the other side's ``fields`` it copies (all when None), as
    ``prefix`` + field; ``declared``, the other side's fields every emitted record carries (null
    when unmatched or absent): ``fields``, else its schema's, prefixed; None for a topic without
    a schema; ``status_as``, the field that says matched or unmatched."""

    fields: list[str] | None
    prefix: str
    declared: list[str] | None
    status_as: str

    def kept(self, record: dict[str, Any]) -> dict[str, Any]:
        """What a right record keeps in the table: the fields a match copies (``merge`` reads no
        others), all when ``fields`` is unset. Entries written whole before read the same."""
        if self.fields is None:
            return dict(record)  # later steps change the event's dict in place
        return {f: record[f] for f in self.fields if f in record}

    def merge(self, left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
        merged = dict(left)
        prefix = self.prefix
        for f in self.fields if self.fields is not None else right:
            if f in right:
                merged[prefix + f] = right[f]
        if self.declared is not None:
            for name in self.declared:  # a declared field the other record lacks is null
                if name not in merged:
                    merged[name] = None
        merged[self.status_as] = MATCHED
        return merged

    def unmatched(self, left: dict[str, Any]) -> dict[str, Any]:
        """A left record without a match: the other side's declared fields null (a field the
        left record has itself keeps its value)."""
        value = dict(left)
        if self.declared is not None:
            for name in self.declared:
                if name not in value:
                    value[name] = None
        value[self.status_as] = UNMATCHED
        return value


def stored_event(stored: dict[str, Any], value: dict[str, Any]) -> Event:
    """A left record that waited in the table, as the event it came in as (its lineage)."""
    topic, partition, offset, timestamp = stored["c"]
    key = stored["k"]
    return Event(
        value, None if key is None else key.encode("latin-1"), orjson.dumps(stored["v"]), [],
        topic, partition, offset, timestamp, 0, topic, partition, offset,
    )  # fmt: skip
