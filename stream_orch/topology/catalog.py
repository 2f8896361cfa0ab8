"""The data catalog of one or more topologies: every topic with its settings, schema, PII and the
nodes that write and read it, and for every field a node writes where its value comes from.

Built from the field flow (:mod:`stream_orch.topology.field_flow`, the analysis the PII lint
uses); rendered as Markdown (:mod:`~stream_orch.topology.catalog_markdown`) or as OpenLineage
datasets and jobs (:mod:`~stream_orch.topology.catalog_openlineage`). Topics of the same name in
several files are one topic (one cluster); its settings are those of the first file declaring it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from stream_orch.topology.field_flow import (
    FieldInfo,
    Level,
    Origin,
    SchemaLookup,
    field_flows,
    schema_fields,
)
from stream_orch.topology.loader import LoadedTopology
from stream_orch.topology.models import TopicSpec
from stream_orch.topology.models_governance import PiiPolicy, pii_policy
from stream_orch.topology.naming import dlq_topic


@dataclass(frozen=True, slots=True)
class Writer:
    """One route target that writes a topic."""

    job: str  # <topology>.<node>
    route: int  # numbered from 1, as validate and the metrics number routes
    where: str  # file:line of the route target
    key_from: tuple[Origin, ...] = ()  # the input fields the record key comes from


@dataclass(frozen=True, slots=True)
class FieldSource:
    """Where a written field comes from, for one or more writers alike."""

    field: str
    how: str
    where: str  # file:line of the step or `set` that sets it ("" for a field as read)
    origins: tuple[Origin, ...]
    pii: Level | None
    writers: tuple[str, ...]  # "<job> route <n>"


@dataclass(slots=True)
class TopicEntry:
    name: str
    spec: TopicSpec
    declared_in: list[str]  # topology files declaring it
    fields: list[dict[str, Any]] | None  # the schema's fields as written (None: no schema)
    pii: dict[str, Level]  # what it carries: declared in its schema or arriving from writers
    writers: list[Writer] = field(default_factory=list)
    readers: list[str] = field(default_factory=list)
    sources: list[FieldSource] = field(default_factory=list)
    conditions: set[Origin] = field(default_factory=set)  # fields deciding which records arrive

    @property
    def policy(self) -> PiiPolicy:
        return pii_policy(self.spec.audience, self.spec.pii)


@dataclass(frozen=True, slots=True)
class JobEntry:
    name: str  # <topology>.<node>
    where: str  # file:line of the node
    description: str | None
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    dead_letters: str


@dataclass(frozen=True, slots=True)
class Catalog:
    files: tuple[str, ...]
    topics: tuple[TopicEntry, ...]
    jobs: tuple[JobEntry, ...]


def build_catalog(topologies: Sequence[tuple[LoadedTopology, SchemaLookup]]) -> Catalog:
    """The catalog of ``topologies`` (each with the schema lookup of its schema folder)."""
    flows = field_flows([(loaded.spec, schema) for loaded, schema in topologies])
    topics: dict[str, TopicEntry] = {}
    for loaded, schema in topologies:
        for name, spec in loaded.spec.topics.items():
            entry = topics.get(name)
            if entry is None:
                fields = schema_fields(schema(spec.schema_)) if spec.schema_ else None
                topics[name] = TopicEntry(name, spec, [loaded.file], fields, {})
            else:
                entry.declared_in.append(loaded.file)
    by_topology = {loaded.spec.topology: loaded for loaded, _ in topologies}
    jobs = []
    merged: dict[str, dict[tuple[str, str, str, tuple[Origin, ...]], list[str]]] = {}
    infos: dict[tuple[str, tuple[str, str, str, tuple[Origin, ...]]], FieldInfo] = {}
    for flow in flows.nodes:
        loaded = by_topology[flow.topology]
        job = f"{flow.topology}.{flow.node}"
        node = loaded.spec.nodes[flow.node]
        for topic in flow.reads:
            if topic in topics and job not in topics[topic].readers:
                topics[topic].readers.append(job)
        writes = []
        for out in flow.outputs:
            entry = topics.get(out.topic)
            if out.topic not in writes:
                writes.append(out.topic)
            if entry is None:
                continue  # an undeclared topic: lint reports it
            route = int(out.path[3]) + 1
            key_from = tuple(sorted(out.key.origins, key=_origin_order)) if out.key is not None else ()
            entry.writers.append(Writer(job, route, f"{loaded.file}:{loaded.line_of(out.path)}", key_from))
            entry.conditions |= out.conditions
            for name, info in out.fields.items():
                where = f"{loaded.file}:{loaded.line_of(info.at)}" if info.at else ""
                key = (name, info.how, where, tuple(sorted(info.origins, key=_origin_order)))
                merged.setdefault(out.topic, {}).setdefault(key, []).append(f"{job} route {route}")
                infos[(out.topic, key)] = info
        jobs.append(
            JobEntry(
                job,
                f"{loaded.file}:{loaded.line_of(('nodes', flow.node))}",
                node.description,
                flow.reads,
                tuple(writes),
                dlq_topic(node),
            )
        )
    for name, entry in topics.items():
        entry.pii = dict(flows.carried.get(name, {}))
        for key, writers in merged.get(name, {}).items():
            info = infos[(name, key)]
            entry.sources.append(FieldSource(key[0], key[1], key[2], key[3], info.pii, tuple(writers)))
        order = {f["name"]: i for i, f in enumerate(entry.fields or [])}
        entry.sources.sort(key=lambda s: (order.get(s.field, len(order)), s.field, s.writers))
    files = tuple(loaded.file for loaded, _ in topologies)
    return Catalog(
        files, tuple(sorted(topics.values(), key=lambda t: t.name)), tuple(sorted(jobs, key=lambda j: j.name))
    )


def _origin_order(origin: Origin) -> tuple[str, str, str, str]:
    return (origin.topic, origin.field, origin.table or "", origin.subtype)


def avro_type(kind: Any) -> str:
    """An Avro type as one short word for a catalog (``null|string``, ``array<string>``, ...)."""
    if isinstance(kind, str):
        return kind
    if isinstance(kind, list):
        return "|".join(avro_type(k) for k in kind)
    if isinstance(kind, dict):
        base = kind.get("type")
        if kind.get("logicalType"):
            return f"{avro_type(base)} ({kind['logicalType']})"
        if base == "array":
            return f"array<{avro_type(kind.get('items'))}>"
        if base == "map":
            return f"map<{avro_type(kind.get('values'))}>"
        if base in ("enum", "record", "fixed"):
            return f"{base} {kind.get('name', '')}".strip()
        return avro_type(base)
    return str(kind)
