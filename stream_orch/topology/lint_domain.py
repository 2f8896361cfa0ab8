"""Lint of mistakes each piece allows but that run wrong (issue 20): a string compared with an
Avro enum field that is not one of its symbols (in ``one_of``, filters, route conditions, ``set``,
derive, score rules and aggregate ``when``); a join whose other side overwrites fields of this side
(unless ``prefix`` renames them or ``overwrite:`` names them); a window whose ``as`` is its key or a
field of the record; a table that steps of more than one node write.

The fields of a node are followed step by step with their enum symbols (:class:`DomainChecks`),
the same way :mod:`stream_orch.topology.lint` follows their names.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Callable, Iterator
from typing import Any

from stream_orch.topology.loader import PathTuple, Severity
from stream_orch.topology.models import (
    AggregateStep,
    DeriveStep,
    EnrichStep,
    FilterStep,
    JoinStep,
    LookupManyStep,
    MaskStep,
    ModelStep,
    NodeSpec,
    NormalizeStep,
    PythonStep,
    ScoreStep,
    TopologySpec,
    WindowStep,
)
from stream_orch.topology.schema_fields import SchemaFields

Symbols = tuple[str, ...] | None  # an enum field's symbols; None for any other field
Fields = dict[str, Symbols] | None  # the fields of a record at a point of a node; None: not known
Add = Callable[[PathTuple, str, str, Severity], None]

_JOIN_STATUS: tuple[str, ...] = ("matched", "unmatched")


class DomainChecks:
    """Runs every check of this module over ``spec``, reporting through ``add`` (lint's)."""

    def __init__(self, spec: TopologySpec, schemas: SchemaFields, add: Add) -> None:
        self.spec = spec
        self.schemas = schemas
        self.add = add

    def run(self) -> None:
        self._tables_written_by_several_nodes()
        for name, node in self.spec.nodes.items():
            self._node(name, node)

    # ------------------------------------------------------------------ tables

    def _tables_written_by_several_nodes(self) -> None:
        writers: dict[str, list[tuple[str, int]]] = {}
        for name, node in self.spec.nodes.items():
            for i, step in enumerate(node.steps):
                table = getattr(step, "table", None)
                if table in self.spec.tables and step.writes_table:
                    writers.setdefault(table, []).append((name, i))
        for table, steps in writers.items():
            nodes = list(dict.fromkeys(node for node, _ in steps))
            if len(nodes) < 2:
                continue
            for node, i in steps:
                if node == nodes[0]:
                    continue
                self.add(
                    ("nodes", node, "steps", i, "table"),
                    f"node `{node}`, step {self.spec.nodes[node].steps[i].step}: table `{table}` is also "
                    f"written by node `{nodes[0]}`; both would keep its rows in one store and "
                    "changelog, each reading and overwriting the other's",
                    f"give node `{node}` a table of its own (e.g. `{table}_{node}`)",
                    "error",
                )

    # ------------------------------------------------------------------ one node

    def _schema_fields(self, topic: str | None) -> Fields:
        spec = self.spec.topics.get(topic or "")
        if spec is None or not spec.schema_ or self.schemas.error:
            return None
        return enum_fields(self.schemas.definitions(spec.schema_))

    def _node(self, name: str, node: NodeSpec) -> None:
        fields = self._schema_fields(node.input)
        for i, step in enumerate(node.steps):
            fields = self._step(name, ("nodes", name, "steps", i), step, fields)
        for i, route in enumerate(node.routes):
            where = f"node `{name}`, route {i + 1}"
            base: PathTuple = ("nodes", name, "routes", i)
            if route.when is not None:
                self._compared((*base, "when"), route.when, fields, where)
            for j, target in enumerate(route.targets()):
                for field, source in target.set.items():
                    self._compared((*base, "to", j, "set", field), source, fields, f"{where}, set {field}")

    def _step(self, node: str, path: PathTuple, step: Any, fields: Fields) -> Fields:
        where = f"node `{node}`, step {step.step}"
        if isinstance(step, NormalizeStep):
            for field, rule in step.fields.items():
                symbols = fields.get(field) if fields is not None else None
                for j, value in enumerate(rule.one_of or []):
                    if symbols is not None and isinstance(value, str) and value not in symbols:
                        self._not_a_symbol(
                            (*path, "fields", field, "one_of", j), where, field, value, symbols, "one_of"
                        )
                if fields is not None and field not in fields:
                    fields = {**fields, field: None}
            return fields
        if isinstance(step, DeriveStep):
            for field, source in step.fields.items():
                self._compared((*path, "fields", field), source, fields, f"{where}, field {field}")
                if fields is not None:
                    fields = {**fields, field: _derived_symbols(source, fields, self.spec.constants)}
            return fields
        if isinstance(step, FilterStep):
            self._compared((*path, "when"), step.when, fields, where)
            return fields
        if isinstance(step, AggregateStep):
            if step.when is not None:
                self._compared((*path, "when"), step.when, fields, where)
            return {**fields, **dict.fromkeys(step.results())} if fields is not None else None
        if isinstance(step, ScoreStep):
            for k, rule in enumerate(step.rules):
                self._compared((*path, "rules", k, "when"), rule.when, fields, f"{where}, rule {rule.name}")
            return {**fields, step.as_: None, step.reasons: None} if fields is not None else None
        if isinstance(step, ModelStep | LookupManyStep):
            out = step.output if isinstance(step, ModelStep) else step.as_
            return {**fields, out: None} if fields is not None else None
        if isinstance(step, MaskStep):
            if fields is None:
                return None
            kept = {f: s for f, s in fields.items() if step.fields.get(f) != "drop"}
            return {f: (None if f in step.fields else s) for f, s in kept.items()}  # a hash is no symbol
        if isinstance(step, EnrichStep):
            table = self.spec.tables.get(step.table)
            row = self._schema_fields(table.topic) if table is not None else None
            return _copied(fields, row, step.fields, step.prefix)
        if isinstance(step, JoinStep):
            return self._join(node, path, step, fields)
        if isinstance(step, WindowStep):
            return self._window(node, path, step, fields)
        if isinstance(step, PythonStep):
            return None  # arbitrary code: the fields after it are not known
        return fields  # validate, dedupe: the record is unchanged

    # ------------------------------------------------------------------ joins and windows

    def _join(self, node: str, path: PathTuple, step: JoinStep, fields: Fields) -> Fields:
        """The other side's copied fields must not overwrite this side's, unless named in overwrite."""
        where = f"node `{node}`, step join"
        other = self._schema_fields(step.topic) if step.topic in self.spec.topics else None
        copied = step.fields if step.fields is not None else (list(other) if other is not None else None)
        if fields is not None and copied is not None:
            other_key = step.other_key or step.key
            same_value = {step.key} if step.prefix + other_key == step.key else set()  # equal by the join
            written = {step.prefix + f for f in copied}
            collisions = sorted((written & set(fields)) - same_value - set(step.overwrite))
            for field in collisions:
                at = (*path, "fields", copied.index(field.removeprefix(step.prefix)))
                self.add(
                    at if step.fields is not None else (*path, "topic"),
                    f"{where}: `{step.topic}`'s field `{field}` would overwrite this side's `{field}` in "
                    "every match",
                    f"set `prefix:` (e.g. `prefix: {step.topic.split('.')[0]}_`), leave `{field}` out of "
                    f"`fields:`, or name it in `overwrite: [{field}]` if the other side's value is wanted",
                    "error",
                )
            for k, field in enumerate(step.overwrite):
                if field not in written & set(fields):
                    self.add(
                        (*path, "overwrite", k),
                        f"{where}: `overwrite` names `{field}`, which the other side does not overwrite",
                        "remove it from `overwrite:`",
                        "warning",
                    )
        out = _copied(fields, other, copied, step.prefix)
        return {**out, step.status_as: _JOIN_STATUS} if out is not None else None

    def _window(self, node: str, path: PathTuple, step: WindowStep, fields: Fields) -> Fields:
        """Each result (``as``, or every name of ``aggregate``) names a new field: not the key, the
        window's times or a field of the input record."""
        where = f"node `{node}`, step window"
        taken = {
            step.key: "its key",
            "window_start": "a field of the result",
            "window_end": "a field of the result",
        }
        results = step.results()
        for name, (function, _) in results.items():
            if name in taken:
                reason = taken[name]
            elif fields is not None and name in fields:
                reason = "a field of the records it reads"
            else:
                continue
            multi = step.aggregate is not None
            at = (*path, "aggregate", name) if multi else (*path, "as_")
            shown = "aggregate" if multi else "as"
            self.add(
                at,
                f"{where}: `{shown}: {name}` is {reason}, so the result would be mistaken for it",
                f"name the result after what it holds, e.g. `{name}_{function}`",
                "error",
            )
        key_symbols = fields.get(step.key) if fields is not None else None
        return {step.key: key_symbols, "window_start": None, "window_end": None} | dict.fromkeys(results)

    # ------------------------------------------------------------------ expressions

    def _compared(self, path: PathTuple, source: str, fields: Fields, where: str) -> None:
        if not fields:
            return
        for field, value in compared_literals(source, self.spec.constants):
            symbols = fields.get(field)
            if symbols is not None and value not in symbols:
                self._not_a_symbol(path, where, field, value, symbols)

    def _not_a_symbol(
        self,
        path: PathTuple,
        where: str,
        field: str,
        value: str,
        symbols: tuple[str, ...],
        what: str = "comparison",
    ) -> None:
        effect = "no record has it" if what == "one_of" else "the comparison never matches"
        self.add(
            path,
            f"{where}: '{value}' is not a symbol of enum field `{field}` ({', '.join(symbols)}), so {effect}",
            symbol_hint(value, symbols),
            "error",
        )


# --------------------------------------------------------------------------- helpers


def symbol_hint(value: str, symbols: tuple[str, ...]) -> str:
    """``did you mean `DELIVERED`?`` for a misspelt symbol (case aside), else the symbols."""
    lowered = {s.lower(): s for s in symbols}
    close = difflib.get_close_matches(value.lower(), list(lowered), n=1, cutoff=0.6)
    if close:
        return f"did you mean `{lowered[close[0]]}`?"
    return "the symbols are " + ", ".join(symbols)


def _copied(fields: Fields, row: Fields, names: list[str] | None, prefix: str) -> Fields:
    """``fields`` plus the row fields copied under ``prefix`` (each keeps its enum symbols)."""
    if fields is None:
        return None
    if names is None:
        if row is None:
            return None  # all fields of an unknown row
        names = list(row)
    return {**fields, **{prefix + f: (row or {}).get(f) for f in names}}


def _derived_symbols(source: str, fields: dict[str, Symbols], constants: dict[str, Any]) -> Symbols:
    """A derived field that is a copy of an enum field keeps its symbols; any other has none."""
    tree = _parse(source)
    if isinstance(tree, ast.Name) and tree.id not in constants:
        return fields.get(tree.id)
    return None


def _parse(source: str) -> ast.expr | None:
    text = source.strip()
    try:
        return ast.parse(f"(\n{text}\n)" if "\n" in text else text, mode="eval").body
    except (SyntaxError, ValueError, RecursionError):
        return None  # reported by lint as an invalid expression


def compared_literals(source: str, constants: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(field, string) for every ``field == 'x'``, ``'x' != field``, ``field in ('x', 'y')`` of an
    expression; a topology constant holding a string (or a list of them) counts as its value."""
    tree = _parse(source)
    if tree is None:
        return
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        for op, left, right in zip(node.ops, operands, operands[1:], strict=False):
            if isinstance(op, ast.Eq | ast.NotEq):
                for a, b in ((left, right), (right, left)):
                    field = _field_name(a, constants)
                    if field is not None:
                        yield from ((field, v) for v in _strings(b, constants, many=False))
            elif isinstance(op, ast.In | ast.NotIn):
                field = _field_name(left, constants)
                if field is not None:
                    yield from ((field, v) for v in _strings(right, constants, many=True))


def _field_name(node: ast.AST, constants: dict[str, Any]) -> str | None:
    return node.id if isinstance(node, ast.Name) and node.id not in constants else None


def _strings(node: ast.AST, constants: dict[str, Any], many: bool) -> list[str]:
    if isinstance(node, ast.Name) and node.id in constants:
        value = constants[node.id]
        if many and isinstance(value, list | tuple | set):
            return [v for v in value if isinstance(v, str)]
        return [value] if isinstance(value, str) and not many else []
    if isinstance(node, ast.Constant):
        return [node.value] if isinstance(node.value, str) and not many else []
    if many and isinstance(node, ast.List | ast.Tuple | ast.Set):
        return [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return []


def enum_fields(schema: dict[str, Any] | None) -> Fields:
    """Top-level fields of an Avro record schema, each with its enum symbols (a nullable enum too,
    and an enum named earlier in the same file), or None when the schema is unreadable."""
    if schema is None:
        return None
    named: dict[str, tuple[str, ...]] = {}

    def symbols(kind: Any) -> Symbols:
        if isinstance(kind, str):
            return named.get(kind) or named.get(kind.rsplit(".", 1)[-1])
        if isinstance(kind, list):
            found = [s for s in (symbols(k) for k in kind) if s is not None]
            return found[0] if len(found) == 1 else None
        if isinstance(kind, dict):
            if kind.get("type") == "enum" and isinstance(kind.get("symbols"), list):
                found = tuple(str(s) for s in kind["symbols"])
                if isinstance(kind.get("name"), str):
                    named[kind["name"]] = found
                    if isinstance(kind.get("namespace"), str):
                        named[f"{kind['namespace']}.{kind['name']}"] = found
                return found
            if kind.get("type") == "record":
                for f in kind.get("fields", []):
                    if isinstance(f, dict):
                        symbols(f.get("type"))  # names the enums nested records define
                return None
            return symbols(kind.get("type")) if isinstance(kind.get("type"), str | dict) else None
        return None

    out: dict[str, Symbols] = {}
    for f in schema.get("fields", []):
        if isinstance(f, dict) and isinstance(f.get("name"), str):
            out[f["name"]] = symbols(f.get("type"))
    return out
