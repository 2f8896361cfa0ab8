"""Which schemas changed between two versions of a topology, and whether each change is compatible.

A schema counts when either version names it (``schema:`` of a topic, a validate step, an external
target...). It is compared when both versions' schema folders hold it and the two definitions
differ (as JSON data: formatting and key order are no change), and, for a topic of both versions
whose ``schema:`` names another schema, the old topic's schema against the new one: its records
were written with the old. JSON topics are validated against the same Avro schemas, so the same
rules are applied to them (they are stricter than the JSON codec, which also accepts a missing
field that admits null).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stream_orch.codecs.compatibility import Incompatibility, Level, incompatibilities
from stream_orch.codecs.schemas import SchemaError, SchemaRegistry
from stream_orch.errors import UserError
from stream_orch.topology.loader import LoadedTopology

__all__ = ["SchemaChange", "schema_changes", "schemas_used"]


@dataclass(frozen=True, slots=True)
class SchemaChange:
    """One changed schema: ``old_name`` in the old folder became ``new_name`` in the new one."""

    subject: str  # `transaction`, or `topic transactions: transaction -> transaction_v2`
    old_name: str
    new_name: str
    file: str  # the new schema's file
    used_by: list[str]  # where the new topology names it (topic transactions, ...)
    backward: list[Incompatibility] = field(default_factory=list)
    forward: list[Incompatibility] = field(default_factory=list)

    def breaks(self, level: Level) -> list[Incompatibility]:
        """What breaks ``level`` (empty: the change meets it)."""
        return {
            "backward": self.backward,
            "forward": self.forward,
            "full": self.backward + self.forward,
            "none": [],
        }[level]

    @property
    def compatibility(self) -> str:
        """The strongest level the change meets: full, backward, forward or none."""
        if not self.backward and not self.forward:
            return "full"
        return "backward" if not self.backward else "forward" if not self.forward else "none"

    def as_json(self, level: Level) -> dict[str, Any]:
        """Stable keys: subject, old_schema, new_schema, file, used_by, compatibility, compatible,
        problems (each direction, path, message)."""
        return {
            "subject": self.subject,
            "old_schema": self.old_name,
            "new_schema": self.new_name,
            "file": self.file,
            "used_by": self.used_by,
            "compatibility": self.compatibility,
            "compatible": not self.breaks(level),
            "problems": [
                {"direction": i.direction, "path": i.path, "message": i.message}
                for i in self.backward + self.forward
            ],
        }


def schemas_used(loaded: LoadedTopology) -> dict[str, list[str]]:
    """Every schema name the topology refers to, with where (``topics.transactions``, ...)."""
    found: dict[str, list[str]] = {}

    def walk(data: Any, where: tuple[str, ...]) -> None:
        if isinstance(data, dict):
            for key, value in data.items():
                if key == "schema" and isinstance(value, str):
                    found.setdefault(value, []).append(".".join(where))
                else:
                    walk(value, (*where, str(key)))
        elif isinstance(data, list):
            for i, value in enumerate(data):
                walk(value, (*where, str(i)))

    data = loaded.spec.model_dump(mode="json", by_alias=True)
    walk({k: v for k, v in data.items() if k != "constants"}, ())  # a constant may be called `schema`
    return found


def schema_changes(
    old: LoadedTopology, new: LoadedTopology, old_dir: Path, new_dir: Path
) -> list[SchemaChange]:
    """Each changed schema of the two versions with its incompatibilities in both directions.

    Raises :class:`UserError` (one line) for a schema folder that cannot be read or a schema
    that a topology names but its folder lacks.
    """
    old_schemas, new_schemas = _registry(old_dir), _registry(new_dir)
    used_old, used_new = schemas_used(old), schemas_used(new)
    pairs: dict[tuple[str, str], str] = {}
    for name in [*used_old, *(n for n in used_new if n not in used_old)]:
        if name in old_schemas and name in new_schemas:
            pairs.setdefault((name, name), name)
    for topic, spec in new.spec.topics.items():
        before = old.spec.topics.get(topic)
        if before is not None and before.schema_ and spec.schema_ and before.schema_ != spec.schema_:
            pairs.setdefault(
                (before.schema_, spec.schema_), f"topic {topic}: {before.schema_} -> {spec.schema_}"
            )
    return list(_changes(pairs, old_schemas, new_schemas, used_new, old, new))


def _changes(
    pairs: dict[tuple[str, str], str],
    old_schemas: SchemaRegistry,
    new_schemas: SchemaRegistry,
    used_new: dict[str, list[str]],
    old: LoadedTopology,
    new: LoadedTopology,
) -> Iterator[SchemaChange]:
    for (old_name, new_name), subject in pairs.items():
        before = _raw(old_schemas, old_name, old)
        after = _raw(new_schemas, new_name, new)
        if before == after:
            continue
        yield SchemaChange(
            subject=subject,
            old_name=old_name,
            new_name=new_name,
            file=str(new_schemas.directory / f"{new_name}.avsc"),
            used_by=used_new.get(new_name, []),
            backward=incompatibilities(before, after, "backward"),
            forward=incompatibilities(before, after, "forward"),
        )


def _registry(directory: Path) -> SchemaRegistry:
    try:
        return SchemaRegistry(directory)
    except SchemaError as exc:
        raise UserError(f"schemas: {exc}") from None


def _raw(registry: SchemaRegistry, name: str, loaded: LoadedTopology) -> Any:
    try:
        return registry.raw(name)
    except SchemaError as exc:
        raise UserError(f"{loaded.file}: {exc}") from None
