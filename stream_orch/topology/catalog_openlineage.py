"""The catalog as JSON in OpenLineage's shapes, for lineage servers such as Marquez: each topic a
dataset (namespace ``kafka://<bootstrap server>``, name the topic) with the standard ``schema``,
``documentation`` and ``columnLineage`` facets and a ``streamOrch_topic`` facet of its own
(partitions, key, retention, compaction, PII, audience, writers, readers); each node a job with
its input and output datasets. Stable: keys sorted, lists in a fixed order, no timestamps."""

from __future__ import annotations

import json
from typing import Any

from stream_orch import __version__
from stream_orch.topology.catalog import Catalog, FieldSource, TopicEntry, avro_type
from stream_orch.topology.field_flow import Origin

PRODUCER = f"https://pypi.org/project/stream-orch/{__version__}"
_SPEC = "https://openlineage.io/spec"
SCHEMA_URLS = {
    "schema": f"{_SPEC}/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet",
    "documentation": f"{_SPEC}/facets/1-1-0/DocumentationDatasetFacet.json#/$defs/DocumentationDatasetFacet",
    "columnLineage": f"{_SPEC}/facets/1-2-0/ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet",
    "documentation_job": f"{_SPEC}/facets/1-1-0/DocumentationJobFacet.json#/$defs/DocumentationJobFacet",
    # our own facet: a URN, as no public document defines it (README "Data catalog and lineage")
    "streamOrch_topic": "urn:stream-orch:facets:StreamOrchTopicDatasetFacet:1",
}
JOB_NAMESPACE = "stream-orch"


def to_openlineage(catalog: Catalog, namespace: str) -> dict[str, Any]:
    """``{"producer", "datasets", "jobs"}``; ``namespace`` is the datasets' (``kafka://host:port``)."""
    return {
        "producer": PRODUCER,
        "datasets": [_dataset(t, namespace) for t in catalog.topics],
        "jobs": [
            {
                "namespace": JOB_NAMESPACE,
                "name": job.name,
                "facets": {
                    "documentation": _facet("documentation_job", description=job.description or job.name)
                },
                "inputs": [{"namespace": namespace, "name": t} for t in job.reads],
                "outputs": [{"namespace": namespace, "name": t} for t in (*job.writes, job.dead_letters)],
            }
            for job in catalog.jobs
        ],
    }


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _facet(kind: str, **content: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER, "_schemaURL": SCHEMA_URLS[kind], **content}


def _dataset(t: TopicEntry, namespace: str) -> dict[str, Any]:
    spec = t.spec
    facets: dict[str, Any] = {
        "streamOrch_topic": _facet(
            "streamOrch_topic",
            partitions=spec.partitions,
            key=spec.key,
            format=spec.format,
            schemaName=spec.schema_,
            retentionMs=spec.retention,
            compacted=spec.compact,
            audience=spec.audience,
            piiPolicy=t.policy,
            piiFields=dict(sorted(t.pii.items())),
            writers=[
                {
                    "job": w.job,
                    "route": w.route,
                    "where": w.where,
                    "keyFrom": [{"name": o.topic, "field": o.field} for o in w.key_from],
                }
                for w in t.writers
            ],
            readers=list(t.readers),
            declaredIn=list(t.declared_in),
        )
    }
    if spec.description:
        facets["documentation"] = _facet("documentation", description=spec.description)
    if t.fields is not None:
        facets["schema"] = _facet(
            "schema",
            fields=[
                {"name": f["name"], "type": avro_type(f.get("type")), "ordinal_position": i}
                | ({"description": str(f["doc"])} if f.get("doc") else {})
                for i, f in enumerate(t.fields, 1)
            ],
        )
    if t.sources:
        fields: dict[str, Any] = {}
        for s in t.sources:
            inputs = fields.setdefault(s.field, {"inputFields": []})["inputFields"]
            for origin in s.origins:
                _add_input(inputs, origin, s, namespace)
        for lineage in fields.values():
            lineage["inputFields"].sort(key=lambda i: (i["name"], i["field"]))
        facets["columnLineage"] = _facet(
            "columnLineage",
            fields=fields,
            dataset=[
                _input(
                    Origin(topic, name),
                    namespace,
                    [_transformation("INDIRECT", "CONDITIONAL", "route or filter")],
                )
                for topic, name in sorted({(o.topic, o.field) for o in t.conditions})
            ],
        )
    return {"namespace": namespace, "name": t.name, "facets": facets}


def _add_input(inputs: list[dict[str, Any]], origin: Origin, s: FieldSource, namespace: str) -> None:
    """One input field of an output field; several writers alike add their transformations to it."""
    description = s.how + (f" ({s.where})" if s.where else "")
    step = _transformation("DIRECT", origin.subtype, description, origin.masking)
    for existing in inputs:
        if (existing["name"], existing["field"]) == (origin.topic, origin.field):
            if step not in existing["transformations"]:
                existing["transformations"].append(step)
            return
    inputs.append(_input(origin, namespace, [step]))


def _input(origin: Origin, namespace: str, transformations: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "namespace": namespace,
        "name": origin.topic,
        "field": origin.field,
        "transformations": transformations,
    }


def _transformation(kind: str, subtype: str, description: str, masking: bool = False) -> dict[str, Any]:
    return {"type": kind, "subtype": subtype, "description": description, "masking": masking}
