"""What ops can see of a running worker's local tables (``/tables`` on its HTTP endpoint and
``stream-orch table``): per table and partition the keys, bytes on disk and the checkpoint, and
one key's current value, masked as the topology's PII rules say (:class:`PiiMask`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from stream_orch.state.tables import LocalTable
from stream_orch.topology.field_flow import SchemaLookup, pii_field_names
from stream_orch.topology.models import AggregateStep, DedupeStep, MaskStep, TopologySpec, WindowStep

MASKED = "<masked>"  # what a served value shows instead of a PII field's value


class PiiMask:
    """The topology's PII rules applied to served table values. A field that any ``mask`` step
    names (``hash`` or ``drop``) or any schema of the topology's topics declares ``"pii"`` is PII
    everywhere: in a served value it keeps its name and its value
    becomes :data:`MASKED`, at any depth (a join buffers whole records). A fixed marker rather than
    the mask step's digest: it says the field is there and nothing about its value, not even
    whether two keys share it. A table that a dedupe, aggregate or window step keys or feeds by a
    PII field holds those values under names of its own (a session's ``k``, collected values), so
    its values are masked whole."""

    def __init__(self, fields: frozenset[str], whole_tables: frozenset[str] = frozenset()) -> None:
        self.fields = fields
        self.whole_tables = whole_tables

    @classmethod
    def of(cls, spec: TopologySpec, schema: SchemaLookup | None = None) -> PiiMask:
        """The rules of ``spec``: the fields its mask steps name, and (with ``schema``, the raw
        record schema of a name) every field that a schema of its topics declares ``"pii"``
        (the schemas are the one source of truth of what is PII; a table's rows follow its
        topic's schema, and a step's table holds fields of the node's records)."""
        steps = [step for node in spec.nodes.values() for step in node.steps]
        declared = pii_field_names(spec, schema) if schema else frozenset()
        fields = frozenset(f for step in steps if isinstance(step, MaskStep) for f in step.fields) | declared
        whole = set()
        for step in steps:
            if isinstance(step, DedupeStep):
                used = {step.field}
            elif isinstance(step, AggregateStep | WindowStep):
                used = {step.key, step.field}
            else:
                continue
            if used & fields:
                whole.add(step.table)
        return cls(fields, frozenset(whole))

    def apply(self, table: str, value: Any) -> Any:
        """``value`` as it may be served (a copy; the table's own value is left alone)."""
        if value is None or not self.fields:
            return value
        if table in self.whole_tables:
            return MASKED
        return self._masked(value)

    def record(self, value: Any) -> Any:
        """A record's value (a dead letter's, decoded) as it may be shown: its PII fields masked."""
        return self._masked(value) if self.fields else value

    def _masked(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: MASKED if k in self.fields else self._masked(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._masked(v) for v in value]
        return value


class TableInspector:
    def __init__(self, tables: Callable[[], Iterable[tuple[str, LocalTable]]], *, mask: PiiMask) -> None:
        self._tables = tables  # (node, table) of every node's local tables, as they are now
        self._mask = mask

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for node, table in self._tables():
            out[table.name] = {
                "node": node,
                "changelog": table.changelog,
                "partitions": {str(p): table.partition_stats(p) for p in sorted(table.partitions())},
            }
        return out

    def lookup(self, name: str, key: str) -> dict[str, Any] | None:
        """The key's value, masked, in the partition of this worker that holds it (None: no such table)."""
        for node, table in self._tables():
            if table.name != name:
                continue
            for partition in sorted(table.partitions()):
                value = table.get(key, partition)
                if value is not None:
                    return {
                        "table": name,
                        "node": node,
                        "key": key,
                        "partition": partition,
                        "value": self._mask.apply(name, value),
                    }
            return {"table": name, "node": node, "key": key, "partition": None, "value": None}
        return None
