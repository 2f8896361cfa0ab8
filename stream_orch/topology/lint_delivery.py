"""Lint of a node's targets outside Kafka (`to: [{http: {...}}]`): names unique in the node, a
schema that exists, and retry tiers for a failed delivery to go through."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stream_orch.topology.loader import PathTuple, Severity
from stream_orch.topology.models import TopologySpec
from stream_orch.topology.models_delivery import external_targets
from stream_orch.topology.schema_fields import SchemaFields, suggest

Add = Callable[[PathTuple, str, str, Severity], None]


def delivery_problems(spec: TopologySpec, schemas: SchemaFields, add: Add) -> None:
    for node_name, node in spec.nodes.items():
        targets = external_targets(node)
        seen: set[str] = set()
        for target in targets:
            path: PathTuple = ("nodes", node_name, "routes", target.route, "to", target.position, target.kind)
            where = f"node `{node_name}`, route {target.route + 1}, {target.kind} target `{target.name}`"
            if target.name in seen:
                add(
                    path,
                    f"{where}: a second target of the node with this name",
                    "give each target of a node its own `name:` (metrics and retries tell them apart by it)",
                    "error",
                )
            seen.add(target.name)
            schema = target.spec.schema_
            if schema is not None and (reason := schemas.problem(schema)):
                add((*path, "schema"), f"{where}: {reason}", "name a schema of the schemas folder", "error")
            elif target.kind == "postgres":
                _postgres_key(target.spec, schemas, path, where, add)
        # a postgres target waits for its database inside the batch: it needs no retry tiers
        if any(t.kind != "postgres" for t in targets) and (node.errors is None or node.errors.retry is None):
            add(
                ("nodes", node_name),
                f"node `{node_name}` delivers outside Kafka but has no `errors.retry`: a destination "
                "that is down would send every record to the DLQ at once",
                "add retry tiers that outlast an outage, e.g. `errors: {retry: {delays: [5s, 30s, 2m]}}`",
                "error",
            )


def _postgres_key(target: Any, schemas: SchemaFields, path: PathTuple, where: str, add: Add) -> None:
    """The key columns of an upsert are fields of the target's schema (they become its columns)."""
    fields = schemas.fields(target.schema_) or []
    for i, column in enumerate(target.key or []):
        if column not in fields:
            add(
                (*path, "key", i),
                f"{where}: key column `{column}` is not a field of schema `{target.schema_}`",
                suggest(column, fields, "field"),
                "error",
            )
