"""Whether one version of an Avro schema reads data written with another, and why not.

The rules are the Avro specification's schema resolution ("Schema Resolution"), applied to the
schemas rather than to a record: a *reader* schema can read everything a *writer* schema writes
when, recursively,

* both are the same primitive, or the writer's is promoted to the reader's (int to long, float or
  double; long to float or double; float to double; string to bytes and bytes to string);
* both are records with the same unqualified name (or a reader alias naming the writer): every
  reader field is matched by name (or by one of its aliases) to a writer field whose type it can
  read, or has a default; writer fields the reader lacks are skipped;
* both are enums of the same name and every writer symbol is a reader symbol, or the reader has a
  default symbol; both are fixed of the same name and size; arrays by their items, maps by their
  values;
* the writer is a union: every branch can be read (by the reader, or by a branch of the reader's
  union); the writer is not a union and the reader is: a reader branch can read it.

A schema registry's compatibility levels are these checks in one or both directions:
``backward`` (the new schema reads data written with the old one: consumers upgrade first),
``forward`` (the old schema reads data written with the new one: producers upgrade first),
``full`` (both). Logical types are resolved as their underlying types, as the specification says.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["LEVELS", "Incompatibility", "Level", "check_compatibility", "incompatibilities"]

Level = Literal["backward", "forward", "full", "none"]
LEVELS: tuple[Level, ...] = ("backward", "forward", "full", "none")
Direction = Literal["backward", "forward"]

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_PROMOTIONS = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}


@dataclass(frozen=True, slots=True)
class Incompatibility:
    """One reason a direction fails: where in the schema (``amount``, ``items.tags[]``) and why."""

    direction: Direction
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.direction} incompatible: {self.message}"


def check_compatibility(old: Any, new: Any, level: Level) -> list[Incompatibility]:
    """What breaks ``level`` when ``old`` (a schema as JSON data, e.g. an .avsc file read with a
    JSON parser) becomes ``new``; empty when the change is compatible."""
    directions: tuple[Direction, ...] = {
        "backward": ("backward",),
        "forward": ("forward",),
        "full": ("backward", "forward"),
        "none": (),
    }[level]
    return [issue for d in directions for issue in incompatibilities(old, new, d)]


def incompatibilities(old: Any, new: Any, direction: Direction) -> list[Incompatibility]:
    """Every reason the reader of ``direction`` cannot read the writer's data: ``backward`` reads
    ``old`` data with ``new``; ``forward`` reads ``new`` data with ``old``."""
    old_types, new_types = _named_types(old), _named_types(new)
    if direction == "backward":
        resolver = _Resolver(direction, reader_types=new_types, writer_types=old_types)
        return list(resolver.check(new, old, ""))
    resolver = _Resolver(direction, reader_types=old_types, writer_types=new_types)
    return list(resolver.check(old, new, ""))


# --------------------------------------------------------------------------- named types


def _full_name(schema: Mapping[str, Any], namespace: str) -> str:
    name = str(schema.get("name", ""))
    if "." in name:
        return name
    space = schema.get("namespace", namespace) or ""
    return f"{space}.{name}" if space else name


def _named_types(schema: Any, namespace: str = "", found: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every record, enum and fixed defined in ``schema``, by full name and by short name (a
    reference may use either; a short name defined twice keeps its first definition)."""
    found = {} if found is None else found
    if isinstance(schema, list):
        for branch in schema:
            _named_types(branch, namespace, found)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            full = _full_name(schema, namespace)
            found.setdefault(full, schema)
            found.setdefault(full.rsplit(".", 1)[-1], schema)
            namespace = full.rsplit(".", 1)[0] if "." in full else ""
        if kind in ("record", "error"):
            for field in schema.get("fields", []):
                _named_types(field.get("type"), namespace, found)
        elif kind == "array":
            _named_types(schema.get("items"), namespace, found)
        elif kind == "map":
            _named_types(schema.get("values"), namespace, found)
        elif isinstance(kind, dict | list):
            _named_types(kind, namespace, found)
    return found


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


# --------------------------------------------------------------------------- resolution


class _Resolver:
    def __init__(self, direction: Direction, reader_types: dict[str, Any], writer_types: dict[str, Any]):
        self.direction = direction
        self.reader_types = reader_types
        self.writer_types = writer_types
        self._seen: set[tuple[str, str]] = set()  # record pairs being checked (recursive types)

    # what each side is, with a name reference replaced by its definition
    def _reader(self, schema: Any) -> Any:
        return self._deref(schema, self.reader_types)

    def _writer(self, schema: Any) -> Any:
        return self._deref(schema, self.writer_types)

    @staticmethod
    def _deref(schema: Any, types: dict[str, Any]) -> Any:
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            return types.get(schema, types.get(_short(schema), schema))
        if isinstance(schema, dict) and isinstance(schema.get("type"), dict | list):
            return _Resolver._deref(schema["type"], types)  # {"type": {...}} wraps a schema
        if isinstance(schema, dict) and schema.get("type") in _PRIMITIVES and "logicalType" in schema:
            return schema["type"]  # a logical type resolves as its underlying type
        if isinstance(schema, dict) and schema.get("type") in _PRIMITIVES:
            return schema["type"]
        return schema

    def _problem(self, path: str, message: str) -> Incompatibility:
        return Incompatibility(self.direction, path or "(root)", message)

    def _which(self) -> tuple[str, str]:
        """(the reader's version, the writer's version) in words."""
        return ("new", "old") if self.direction == "backward" else ("old", "new")

    def readable(self, reader: Any, writer: Any) -> bool:
        return not any(True for _ in self.check(reader, writer, ""))

    def check(self, reader: Any, writer: Any, path: str) -> Iterator[Incompatibility]:
        reader, writer = self._reader(reader), self._writer(writer)
        if isinstance(writer, list):
            # every branch may have been written: each must be readable
            for branch in writer:
                kind = _kind(self._writer(branch))
                if not isinstance(reader, list) and kind == _kind(reader) and kind not in _PRIMITIVES:
                    yield from self.check(reader, branch, path)  # same shape: say what inside differs
                elif not self.readable(reader, branch):
                    writer_side, reader_side = self._which()[1], self._which()[0]
                    shown = "union " if isinstance(reader, list) else "type "
                    yield self._problem(
                        path,
                        f"{_where(path)}: the {writer_side} union's branch {_describe(self._writer(branch))} "
                        f"cannot be read as the {reader_side} {shown}{_describe(reader)}",
                    )
            return
        if isinstance(reader, list):
            if not any(self.readable(r, writer) for r in reader):
                yield self._problem(
                    path,
                    f"{_where(path)}: {self._which()[1]} type {_describe(writer)} matches no branch of the "
                    f"{self._which()[0]} union {_describe(reader)}",
                )
            return
        r_kind, w_kind = _kind(reader), _kind(writer)
        if r_kind in _PRIMITIVES or w_kind in _PRIMITIVES:
            if r_kind != w_kind and r_kind not in _PROMOTIONS.get(w_kind, ()):
                yield self._problem(
                    path,
                    f"{_where(path)}: type changed from {_describe(self._old(reader, writer))} to "
                    f"{_describe(self._new(reader, writer))} ({w_kind} data cannot be read as {r_kind})",
                )
            return
        if r_kind != w_kind:
            yield self._problem(
                path,
                f"{_where(path)}: type changed from {_describe(self._old(reader, writer))} to "
                f"{_describe(self._new(reader, writer))}",
            )
            return
        if r_kind in ("record", "error", "enum", "fixed") and not _names_match(reader, writer):
            before = _short(str(self._old(reader, writer).get("name")))
            after = _short(str(self._new(reader, writer).get("name")))
            yield self._problem(
                path,
                f"{_where(path)}: {r_kind} name changed from {before} to {after} "
                "(and the reader has no alias for it)",
            )
            return
        if r_kind in ("record", "error"):
            yield from self._record(reader, writer, path)
        elif r_kind == "enum":
            yield from self._enum(reader, writer, path)
        elif r_kind == "fixed":
            if reader.get("size") != writer.get("size"):
                yield self._problem(
                    path,
                    f"{_where(path)}: fixed size changed from {self._old(reader, writer).get('size')} to "
                    f"{self._new(reader, writer).get('size')}",
                )
        elif r_kind == "array":
            yield from self.check(reader.get("items"), writer.get("items"), f"{path}[]")
        elif r_kind == "map":
            yield from self.check(reader.get("values"), writer.get("values"), f"{path}{{}}")

    def _old(self, reader: Any, writer: Any) -> Any:
        return writer if self.direction == "backward" else reader

    def _new(self, reader: Any, writer: Any) -> Any:
        return reader if self.direction == "backward" else writer

    def _record(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> Iterator[Incompatibility]:
        pair = (_short(str(reader.get("name"))), _short(str(writer.get("name"))))
        if pair in self._seen:  # a recursive type: this pair is already being checked further up
            return
        self._seen.add(pair)
        try:
            written = {f["name"]: f for f in writer.get("fields", [])}
            for field in reader.get("fields", []):
                name = field["name"]
                inner = f"{path}.{name}" if path else name
                match = written.get(name)
                if match is None:
                    match = next((written[a] for a in field.get("aliases", []) if a in written), None)
                if match is not None:
                    yield from self.check(field.get("type"), match.get("type"), inner)
                elif "default" not in field:
                    if self.direction == "backward":
                        why = f"field {inner} added without a default (old records do not have it)"
                    else:
                        why = (
                            f"field {inner} removed, and the old schema has no default for it "
                            "(old readers need it in new records)"
                        )
                    yield self._problem(inner, why)
        finally:
            self._seen.discard(pair)

    def _enum(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> Iterator[Incompatibility]:
        known = set(reader.get("symbols", []))
        missing = [s for s in writer.get("symbols", []) if s not in known]
        if missing and "default" not in reader:
            shown = ", ".join(missing)
            if self.direction == "backward":
                why = f"enum symbol {shown} removed and the new enum has no default"
            else:
                why = f"enum symbol {shown} added and the old enum has no default"
            yield self._problem(path, f"{_where(path)}: {why}")


def _kind(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, dict):
        return str(schema.get("type"))
    return "union"


def _names_match(reader: Mapping[str, Any], writer: Mapping[str, Any]) -> bool:
    """The specification's rule: the unqualified names are equal, or a reader alias is the writer's name."""
    writer_name = _short(str(writer.get("name")))
    if _short(str(reader.get("name"))) == writer_name:
        return True
    return any(_short(str(alias)) == writer_name for alias in reader.get("aliases", []))


def _where(path: str) -> str:
    return f"field {path}" if path else "the schema"


def _describe(schema: Any) -> str:
    if isinstance(schema, list):
        return "[" + ", ".join(_describe(s) for s in schema) + "]"
    if isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            return f"{kind} {_short(str(schema.get('name')))}"
        if kind == "array":
            return f"array<{_describe(schema.get('items'))}>"
        if kind == "map":
            return f"map<{_describe(schema.get('values'))}>"
        return _describe(kind)
    return str(schema)
