"""Where each field of each node's outputs comes from, and which PII it carries.

One analysis, pure functions on loaded topologies and their schemas, used by the PII lint
(:mod:`stream_orch.topology.lint_pii`) and the catalog (:mod:`stream_orch.topology.catalog`).
A node's records are followed step by step (:mod:`stream_orch.topology.field_steps`), then
through each route target (``set``, the projection onto the topic's schema, the record key); a
topic another node writes carries the PII that its writers' outputs carry (computed to a fixed
point, so a chain or a cycle of nodes is followed across files too).

PII levels (schema attribute ``"pii"``): ``direct`` identifies a person on its own (a name, an
e-mail); ``indirect`` identifies one only with other data (a pseudonym, a birth date). A value
computed from fields carries the highest level among them (the expression is not analysed: a
``derive`` of ``len(email)`` is still direct); a ``mask: hash`` makes a direct field indirect
(a keyed digest is a pseudonym: the same person gets the same digest); ``mask: drop`` removes
it. A ``python`` step is opaque: the fields it receives are assumed to leave it unchanged, and a
field first seen after it comes from it with no known input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from stream_orch.topology.models import TopologySpec
from stream_orch.topology.models_schedule import TICK_FIELD

__all__ = [
    "FieldInfo",
    "Flows",
    "Level",
    "NodeFlow",
    "Origin",
    "Output",
    "Record",
    "Rest",
    "SchemaLookup",
    "declared_pii",
    "field_flows",
    "higher",
    "pii_field_names",
]

PathTuple = tuple[str | int, ...]
Level = Literal["direct", "indirect"]
LEVELS: tuple[Level, ...] = ("direct", "indirect")
_RANK = {None: 0, "indirect": 1, "direct": 2}
#: the record schema of a schema name as written in its file, or None when missing/unreadable
SchemaLookup = Callable[[str], "dict[str, Any] | None"]


def higher(a: Level | None, b: Level | None) -> Level | None:
    return a if _RANK[a] >= _RANK[b] else b


@dataclass(frozen=True, slots=True)
class Origin:
    """One input field a value comes from (OpenLineage's InputField)."""

    topic: str
    field: str
    table: str | None = None  # read through this table (enrich lookup, schedule scan)
    subtype: str = "IDENTITY"  # IDENTITY (copied), TRANSFORMATION (computed), AGGREGATION
    masking: bool = False  # hashed on the way (mask: hash)

    def transformed(self, subtype: str) -> Origin:
        # a computation over a copied value is a transformation; an aggregation stays one
        return (
            self if self.subtype == "AGGREGATION" or subtype == "IDENTITY" else replace(self, subtype=subtype)
        )


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """A field at a point of a node: where its value comes from and the PII it carries."""

    origins: frozenset[Origin]
    how: str  # the step that last set it, e.g. "derive `amount * 2`", "enrich (table `t`)", "input"
    at: PathTuple = ()  # where that step is written (() for a field as read from the input)
    pii: Level | None = None
    pii_from: str = ""  # the input field the PII came from, for messages: "`customers`.`email`"


@dataclass(frozen=True, slots=True)
class Rest:
    """Fields not listed: a topic without schema, a table row copied whole, a python step's new ones."""

    topic: str | None
    table: str | None
    how: str
    at: PathTuple = ()


@dataclass(slots=True)
class Record:
    """The fields of the records at one point of a node."""

    fields: dict[str, FieldInfo]
    rest: tuple[Rest, ...] = ()
    topic_pii: Mapping[str, Mapping[str, Level]] = field(default_factory=dict)
    gone: frozenset[str] = frozenset()  # dropped (mask: drop): not even in the rest

    def get(self, name: str) -> FieldInfo | None:
        info = self.fields.get(name)
        if info is not None or not self.rest or name in self.gone:
            return info
        infos = [read_field(r.topic, name, r.table, r.how, r.at, self.topic_pii) for r in self.rest]
        return combine(infos, infos[0].how, infos[0].at, "IDENTITY")

    def copy(self) -> Record:
        return Record(dict(self.fields), self.rest, self.topic_pii, self.gone)


def read_field(
    topic: str | None,
    name: str,
    table: str | None,
    how: str,
    at: PathTuple,
    topic_pii: Mapping[str, Mapping[str, Level]],
) -> FieldInfo:
    """A field as read from ``topic`` (through ``table``): its origin and the topic's PII for it."""
    if topic is None:
        return FieldInfo(frozenset(), how, at)
    level = topic_pii.get(topic, {}).get(name)
    return FieldInfo(
        frozenset({Origin(topic, name, table)}), how, at, level, f"`{topic}`.`{name}`" if level else ""
    )


def combine(infos: Iterable[FieldInfo], how: str, at: PathTuple, subtype: str) -> FieldInfo:
    """A value computed from ``infos``: every origin, and the highest PII among them."""
    origins: set[Origin] = set()
    pii: Level | None = None
    pii_from = ""
    for info in infos:
        origins.update(o.transformed(subtype) for o in info.origins)
        if _RANK[info.pii] > _RANK[pii]:
            pii, pii_from = info.pii, info.pii_from
    return FieldInfo(frozenset(origins), how, at, pii, pii_from)


@dataclass(frozen=True, slots=True)
class Output:
    """What one route target of a node writes to a topic."""

    topology: str
    node: str
    topic: str
    path: PathTuple  # the route target in the topology file
    fields: dict[str, FieldInfo]
    projected: bool  # onto the topic's schema (else every field of the record; more may be `rest`)
    rest: tuple[Rest, ...] = ()
    # input fields that decide whether a record comes here (filters, this and earlier routes' `when`)
    conditions: frozenset[Origin] = frozenset()
    key: FieldInfo | None = None  # where the record key's bytes come from (None: not known)


@dataclass(frozen=True, slots=True)
class NodeFlow:
    topology: str
    node: str
    reads: tuple[str, ...]  # topics: the input, join topics, topics of looked-up or scanned tables
    outputs: tuple[Output, ...]


@dataclass(frozen=True, slots=True)
class Flows:
    nodes: tuple[NodeFlow, ...]
    declared: dict[str, dict[str, Level]]  # topic -> field -> level, from the topic's schema
    carried: dict[str, dict[str, Level]]  # the same with what writers' outputs carry


def schema_fields(schema: Mapping[str, Any] | None) -> list[dict[str, Any]] | None:
    if not isinstance(schema, Mapping) or not isinstance(schema.get("fields"), list):
        return None
    return [f for f in schema["fields"] if isinstance(f, dict) and isinstance(f.get("name"), str)]


def field_pii(f: Mapping[str, Any]) -> Level | None:
    value = f.get("pii")
    return value if value in LEVELS else None


def declared_pii(spec: TopologySpec, schema: SchemaLookup) -> dict[str, dict[str, Level]]:
    """Topic -> its schema's fields that declare ``"pii"`` -> their level."""
    out: dict[str, dict[str, Level]] = {}
    for name, topic in spec.topics.items():
        fields = schema_fields(schema(topic.schema_)) if topic.schema_ else None
        levels = {f["name"]: lvl for f in fields or [] if (lvl := field_pii(f)) is not None}
        if levels:
            out[name] = levels
    return out


def pii_field_names(spec: TopologySpec, schema: SchemaLookup) -> frozenset[str]:
    """Every field name that a schema of ``spec``'s topics declares PII (the names whose values
    the tools that show stored or written records mask)."""
    return frozenset(name for levels in declared_pii(spec, schema).values() for name in levels)


def field_flows(topologies: Iterable[tuple[TopologySpec, SchemaLookup]]) -> Flows:
    """The outputs of every node of ``topologies`` (several files: topics alike by name are one)."""
    from stream_orch.topology.field_steps import node_flow  # it builds on this module

    pairs = list(topologies)
    declared: dict[str, dict[str, Level]] = {}
    for spec, schema in pairs:
        for topic, levels in declared_pii(spec, schema).items():
            merged = declared.setdefault(topic, {})
            for name, level in levels.items():
                merged[name] = higher(merged.get(name), level)  # type: ignore[assignment]
    carried = {t: dict(v) for t, v in declared.items()}
    nodes = [(i, name) for i, (spec, _) in enumerate(pairs) for name in spec.nodes]
    flows: dict[tuple[int, str], NodeFlow] = {}
    readers: dict[str, list[tuple[int, str]]] = {}
    raised: set[str] = set()
    for node in nodes:
        flows[node] = node_flow(*pairs[node[0]], node[1], carried)
        raised |= _raised(flows[node], carried)
        for topic in flows[node].reads:
            readers.setdefault(topic, []).append(node)
    # a node is computed again when a topic it reads gains PII; PII only rises and the fields
    # are finite, so this ends, after a pass per chain of nodes rather than per node
    queue = list(dict.fromkeys(r for topic in sorted(raised) for r in readers.get(topic, [])))
    while queue:
        node = queue.pop(0)
        flows[node] = node_flow(*pairs[node[0]], node[1], carried)
        for topic in _raised(flows[node], carried):
            queue += [r for r in readers.get(topic, []) if r not in queue]
    return Flows(tuple(flows[n] for n in nodes), declared, carried)


def _raised(flow: NodeFlow, carried: dict[str, dict[str, Level]]) -> set[str]:
    """Record in ``carried`` the PII ``flow``'s outputs carry; the topics that gained some."""
    raised = set()
    for out in flow.outputs:
        for name, info in out.fields.items():
            have = carried.get(out.topic, {}).get(name)
            if info.pii is not None and higher(have, info.pii) != have:
                carried.setdefault(out.topic, {})[name] = info.pii
                raised.add(out.topic)
    return raised


def input_record(
    spec: TopologySpec, schema: SchemaLookup, topic: str, carried: Mapping[str, Mapping[str, Level]]
) -> Record:
    """The records of ``topic`` as a node reads them: the schema's fields, else any field."""
    t = spec.topics.get(topic)
    fields = schema_fields(schema(t.schema_)) if t is not None and t.schema_ else None
    if fields is None:
        return Record({}, (Rest(topic, None, "input"),), carried)
    return Record(
        {f["name"]: read_field(topic, f["name"], None, "input", (), carried) for f in fields}, (), carried
    )


def table_rows(
    spec: TopologySpec,
    schema: SchemaLookup,
    table: str,
    how: str,
    at: PathTuple,
    carried: Mapping[str, Mapping[str, Level]],
) -> tuple[dict[str, FieldInfo] | None, Rest]:
    """The fields of a table's rows (None: not known) and the rest that stands for them."""
    t = spec.tables.get(table)
    topic = t.topic if t is not None else None
    rest = Rest(topic, table, how, at)
    spec_topic = spec.topics.get(topic or "")
    fields = schema_fields(schema(spec_topic.schema_)) if spec_topic and spec_topic.schema_ else None
    if fields is None or topic is None:
        return None, rest
    return {f["name"]: read_field(topic, f["name"], table, how, at, carried) for f in fields}, rest


def scheduled_record(
    spec: TopologySpec, schema: SchemaLookup, node: str, carried: Mapping[str, Mapping[str, Level]]
) -> Record:
    """A scheduled node's records: the rows of the tables it scans, plus the tick's time."""
    spec_node = spec.nodes[node]
    assert spec_node.schedule is not None
    record = Record({}, (), carried)
    for i, scan in enumerate(spec_node.schedule.scan):
        at: PathTuple = ("nodes", node, "schedule", "scan", i)
        fields, rest = table_rows(
            spec, schema, scan.table, f"schedule scan (table `{scan.table}`)", at, carried
        )
        if fields is None:
            record.rest = (*record.rest, rest)
        else:
            record.fields.update(fields)
    record.fields[TICK_FIELD] = FieldInfo(
        frozenset(), "schedule (the tick's time)", ("nodes", node, "schedule")
    )
    return record
