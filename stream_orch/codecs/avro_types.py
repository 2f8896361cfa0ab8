"""What both the validator and the output conformer need of an Avro schema: its named types,
each type resolved to its declaration, and the words an error message uses for a type or value."""

from __future__ import annotations

import sys
from typing import Any

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
FLOAT_MAX = 3.4028234663852886e38  # the largest 32-bit float
DOUBLE_MAX = sys.float_info.max
PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


class AvroTypes:
    """The named types (enums, records, fixed) of one schema, by short and full name, and what
    the codecs ask of a type: its declaration, whether it admits null, how to name it."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.named: dict[str, Any] = {}
        self._collect(schema, schema.get("namespace"))

    def _collect(self, schema: Any, namespace: str | None) -> None:
        if isinstance(schema, list):
            for branch in schema:
                self._collect(branch, namespace)
            return
        if not isinstance(schema, dict):
            return
        kind = schema.get("type")
        if kind in ("record", "error", "enum", "fixed") and "name" in schema:
            name = schema["name"]
            ns = schema.get("namespace", namespace)
            self.named.setdefault(name, schema)
            if ns and "." not in name:
                self.named.setdefault(f"{ns}.{name}", schema)
            self.named.setdefault(name.rsplit(".", 1)[-1], schema)
            namespace = ns
        if kind in ("record", "error"):
            for f in schema["fields"]:
                self._collect(f["type"], namespace)
        elif kind == "array":
            self._collect(schema["items"], namespace)
        elif kind == "map":
            self._collect(schema["values"], namespace)
        elif isinstance(kind, dict | list):
            self._collect(kind, namespace)

    def resolve(self, schema: Any) -> Any:
        """A type name or declaration as its declaration (a primitive as its name)."""
        while True:
            if schema.__class__ is str:
                if schema in PRIMITIVES:
                    return schema
                schema = self.named[schema]
                continue
            if schema.__class__ is dict:
                kind = schema.get("type")
                if kind.__class__ is str and kind in PRIMITIVES:
                    return kind
                if kind.__class__ is dict or kind.__class__ is list:
                    schema = kind
                    continue
            return schema

    # ------------------------------------------------------------------ optional fields

    def admits_null(self, schema: Any) -> bool:
        schema = self.resolve(schema)
        if isinstance(schema, list):
            return any(self.resolve(b) == "null" for b in schema)
        return schema == "null"

    def optional(self, field: dict[str, Any]) -> bool:
        """The field may be absent: it has a default or admits null."""
        return "default" in field or self.admits_null(field["type"])

    # ------------------------------------------------------------------ describing

    def describe(self, schema: Any) -> str:
        """The type as an error message names it: ``double``, ``one of A, B``, ``array of long``."""
        if isinstance(schema, dict) and schema.get("logicalType") == "timestamp-millis":
            return f"{schema['type']} (epoch milliseconds)"
        schema = self.resolve(schema)
        if isinstance(schema, list):
            return " or ".join(self.describe(b) for b in schema)
        if isinstance(schema, str):
            return schema
        kind = schema["type"]
        if kind == "enum":
            return "one of " + ", ".join(schema["symbols"])
        if kind == "array":
            return f"array of {self.describe(schema['items'])}"
        if kind == "map":
            return f"map of {self.describe(schema['values'])}"
        if kind in ("record", "error"):
            return f"record {schema['name']}"
        if kind == "fixed":
            return f"{schema['size']} bytes"
        return str(kind)


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "array"}.get(type(value), type(value).__name__)


def show(value: Any) -> str:
    if value is None:
        return "null"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    if isinstance(value, str | bytes | bool | int | float):
        return f"{type(value).__name__} {text}"
    return f"{type_name(value)} {text}"


def primitive_check(kind: str, var: str, *, exact_numbers: bool) -> str:
    """A Python expression, for generated checks, true when ``var`` holds a value of the primitive
    ``kind``. A float or double takes an int or a float (Avro's rule, the validator's), or with
    ``exact_numbers`` a finite float within the type's range only (the output conformer then
    coerces an int, or names what is wrong: JSON has no inf or nan and orjson writes them as
    null); the expression names ``_NUM`` (``frozenset({int, float})``) in the lenient case."""
    if kind == "null":
        return f"{var} is None"
    if kind == "boolean":
        return f"{var}.__class__ is bool"
    if kind == "string":
        return f"{var}.__class__ is str"
    if kind == "bytes":
        return f"{var}.__class__ is bytes"
    if kind == "int":
        return f"({var}.__class__ is int and {INT_MIN} <= {var} <= {INT_MAX})"
    if kind == "long":
        return f"({var}.__class__ is int and {LONG_MIN} <= {var} <= {LONG_MAX})"
    if kind in ("float", "double"):
        if not exact_numbers:
            return f"{var}.__class__ in _NUM"
        top = FLOAT_MAX if kind == "float" else DOUBLE_MAX  # a nan fails both comparisons
        return f"({var}.__class__ is float and {-top!r} <= {var} <= {top!r})"
    raise ValueError(f"unsupported Avro type {kind!r}")
