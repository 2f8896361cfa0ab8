"""Lint of what routes write to topics with a schema: every `set` field is a field of the schema,
with a constant of its type, and every required field is provided (:class:`OutputChecks`, mixed
into the linter)."""

from __future__ import annotations

import ast
import difflib
from collections.abc import Callable
from typing import Any

from stream_orch.topology.loader import PathTuple, Severity
from stream_orch.topology.models import TopologySpec
from stream_orch.topology.schema_fields import SchemaFields, suggest


class OutputChecks:
    spec: TopologySpec
    schemas: SchemaFields
    output_checks: dict[tuple[str, str], Callable[[dict[str, Any]], Any]]  # (schema, field) -> check

    def add(self, path: PathTuple, message: str, hint: str, severity: Severity = "error") -> None:
        raise NotImplementedError

    def _output_schema(
        self, tpath: PathTuple, where: str, topic_name: str, setting: dict[str, str], avail: set[str] | None
    ) -> None:
        """What a route writes to a topic with a schema: every `set` field is a field of the schema
        (with a constant value of its type), and every required field is provided."""
        topic = self.spec.topics[topic_name]
        if not topic.schema_ or self.schemas.error:
            return
        schema = self.schemas.definitions(topic.schema_)
        if schema is None:
            return
        fields = {f["name"]: f for f in schema["fields"] if isinstance(f, dict) and "name" in f}
        stray = [name for name in setting if name not in fields]
        for name in stray:
            self.add(
                (*tpath, "set", name),
                f"{where}: `set` field `{name}` is not in schema `{topic.schema_}` of topic `{topic_name}`",
                suggest(name, fields, f"fields of {topic.schema_}"),
            )
        for name, source in setting.items():
            if name in fields:
                field = (topic.schema_, schema, fields[name])
                self._set_constant((*tpath, "set", name), where, field, source, topic_name)
        if avail is None:
            return  # after a python step the fields are not known
        provided = avail | set(setting)
        for name, f in fields.items():
            if name in provided or _optional(schema, f):
                continue
            close = difflib.get_close_matches(name, stray, n=1)
            if close:
                hint = f"`set` writes `{close[0]}`: did you mean `{name}`?"
            else:
                near = suggest(name, avail, "fields here")
                hint = (
                    f"add it with `set: {{{name}: ...}}`, compute it in an earlier step, or give it a "
                    f"default in the schema ({near})"
                )
            self.add(
                tpath,
                f"{where}: records for `{topic_name}` lack required field `{name}` of schema "
                f"`{topic.schema_}`",
                hint,
            )

    def _field_check(
        self, schema_name: str, schema: dict[str, Any], f: dict[str, Any], topic: str
    ) -> Callable[[dict[str, Any]], Any]:
        """The output check of one field of a schema, built once per lint run."""
        from stream_orch.codecs.conform import output_projection

        key = (schema_name, f["name"])
        if key not in self.output_checks:
            self.output_checks[key] = output_projection({**schema, "fields": [f]}, topic)
        return self.output_checks[key]

    def _set_constant(
        self,
        path: PathTuple,
        where: str,
        field: tuple[str, dict[str, Any], dict[str, Any]],
        source: str,
        topic: str,
    ) -> None:
        """A `set` value written as a constant (or `a if c else b` of constants) has the type of
        ``field`` (schema name, schema, field)."""
        try:
            tree = ast.parse(source.strip(), mode="eval").body
        except SyntaxError:
            return  # reported with the expression
        from stream_orch.codecs.conform import OutputSchemaViolation

        values = _constants(tree)
        if not values:
            return
        f = field[2]
        check = self._field_check(*field, topic)
        for value in values:
            try:
                check({f["name"]: value})
            except OutputSchemaViolation as exc:
                self.add(
                    path,
                    f"{where}: `set` field `{f['name']}` of `{topic}`: {exc.detail}",
                    "write a value of the field's type in the schema",
                )
                return
            except Exception:  # a schema the codecs cannot read: reported with the topic
                return


def _constants(node: ast.AST) -> list[Any]:
    """The values an expression can take when they are all literals (``'a' if c else 'b'``)."""
    if isinstance(node, ast.IfExp):
        return _constants(node.body) + _constants(node.orelse)
    try:
        return [ast.literal_eval(node)]
    except Exception:  # a field, a call: not a constant
        return []


def _optional(schema: dict[str, Any], f: dict[str, Any]) -> bool:
    """A field an output may leave out: it has a default or its type admits null."""
    if "default" in f:
        return True
    kind = f.get("type")
    if isinstance(kind, dict):
        kind = kind.get("type")
    if isinstance(kind, list):
        return "null" in kind or any(isinstance(b, dict) and b.get("type") == "null" for b in kind)
    return kind == "null"
