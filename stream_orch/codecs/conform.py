"""Output values in their topic's schema: projected, coerced to the schema's types, checked.

An output record is built from whatever the steps left in the event; the topic's schema says
what goes out. :func:`output_projection` builds, once per schema and output, a function that
keeps the schema's fields, turns values into the schema's types where that loses nothing
(``int`` → ``double``/``float``, an integral ``float`` → ``int``/``long``, also inside unions,
arrays and maps) and raises :class:`OutputSchemaViolation` naming the field when a value cannot
be written (a string where a number belongs, a symbol outside an enum, a required field
missing, a number that is not finite: JSON has no inf or nan, and orjson writes them as null).
:func:`field_conformer` does the same in place for the fields a route's ``set`` adds.

The good path is one generated function: every value read once, every class compared with
``is`` (strict: an ``int`` in a ``double`` field is not good, it goes through the coercing
walk), then the output dict built as one dict display. Only an output that needs coercion or
is wrong takes the slow walk. A field that is absent and optional (it has a ``default`` or
admits ``null``) stays absent, as a consumer reading with the schema fills it in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from stream_orch.codecs.avro_types import (
    DOUBLE_MAX,
    FLOAT_MAX,
    INT_MAX,
    INT_MIN,
    LONG_MAX,
    LONG_MIN,
    AvroTypes,
    primitive_check,
    show,
)

_MISSING = object()
# what the generated checks name
_BUILTINS: dict[str, Any] = {
    c.__name__: c for c in (str, bool, int, float, bytes, list, dict, all, map, sum, type, KeyError)
}
_EXACT_CLASS = {
    "string": "_T_STR",
    "boolean": "_T_BOOL",
    "bytes": "_T_BYTES",
    "double": "_T_FLOAT",
    "null": "_T_NONE",
}  # item types whose check is the class alone (a double's, and that each is finite)
_BUILTINS |= {
    "_T_STR": frozenset({str}),
    "_T_BOOL": frozenset({bool}),
    "_T_BYTES": frozenset({bytes}),
    "_T_FLOAT": frozenset({float}),
    "_T_NONE": frozenset({type(None)}),
}


class OutputSchemaViolation(ValueError):
    """An output value its topic's schema cannot carry.

    ``str(error)`` is ``<topic>.<field>: <what is wrong>``; the router dead-letters the event
    with the reason ``output_schema_violation: <that>``.
    """

    def __init__(self, topic: str, field: str, detail: str) -> None:
        self.topic = topic
        self.field = field
        self.detail = detail
        super().__init__(f"{topic}.{field}: {detail}")


class _Bad(Exception):
    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        self.detail = detail


class _Types(AvroTypes):
    """A schema's types, and the checks and coercions of output values."""

    # ------------------------------------------------------------------ the fast check

    def strict(self, schema: Any, var: str, consts: dict[str, Any], depth: int = 0) -> str:
        """A Python expression true when ``var`` is already exactly of the schema's type."""
        schema = self.resolve(schema)
        if isinstance(schema, list):
            return "(" + " or ".join(self.strict(b, var, consts, depth) for b in schema) + ")"
        if isinstance(schema, str):
            return primitive_check(schema, var, exact_numbers=True)
        kind = schema["type"]
        if kind == "enum":
            name = f"_E{len(consts)}"
            consts[name] = frozenset(schema["symbols"])
            return f"({var}.__class__ is str and {var} in {name})"
        item = f"_x{depth}"
        if kind in ("array", "map"):
            inner_schema = self.resolve(schema["items" if kind == "array" else "values"])
            exact = _EXACT_CLASS.get(inner_schema) if isinstance(inner_schema, str) else None
            if kind == "array":
                if exact is not None:  # the types of the items, in C: a third of the generator's time
                    check = f"{exact}.issuperset(map(type, {var}))"
                    if inner_schema == "double":  # finite items have a finite sum, mostly: an
                        # overflowing sum only sends the list to the walk, which checks each item
                        check += f" and {-DOUBLE_MAX!r} <= sum({var}) <= {DOUBLE_MAX!r}"
                    return f"({var}.__class__ is list and (not {var} or {check}))"
                inner = self.strict(inner_schema, item, consts, depth + 1)
                return f"({var}.__class__ is list and (not {var} or all({inner} for {item} in {var})))"
            inner = self.strict(inner_schema, item, consts, depth + 1)
            return (
                f"({var}.__class__ is dict and all(_k.__class__ is str and {inner} "
                f"for _k, {item} in {var}.items()))"
            )
        return "False"  # records and fixed: always through the walk, which checks them

    # ------------------------------------------------------------------ the coercing walk

    def coerce(self, schema: Any, value: Any, path: str) -> Any:
        """``value`` in the schema's type (the same object when it already is), or raise _Bad."""
        schema = self.resolve(schema)
        if isinstance(schema, list):
            branches = [self.resolve(b) for b in schema]
            for branch in branches:  # an exact match first: 1 stays an int in ["int", "double"]
                if self._exact(branch, value):
                    return value
            for branch in branches:
                try:
                    return self.coerce(branch, value, path)
                except _Bad:
                    continue
            raise _Bad(path, f"expected {self.describe(schema)}, got {show(value)}")
        kind = schema if isinstance(schema, str) else schema["type"]
        cls = value.__class__
        if kind in ("double", "float"):
            if cls is int:
                try:
                    value, cls = float(value), float
                except OverflowError:
                    bits = value.bit_length()
                    raise _Bad(path, f"an int of {bits} bits is too large for a {kind}") from None
            if cls is float:
                if not math.isfinite(value):  # JSON has none: orjson would write null
                    raise _Bad(path, f"{value} is not a finite number")
                if kind == "float" and abs(value) > FLOAT_MAX:
                    raise _Bad(path, f"{value} is out of the float range")
                return value
        elif kind in ("int", "long"):
            low, high = (INT_MIN, INT_MAX) if kind == "int" else (LONG_MIN, LONG_MAX)
            if cls is float and value.is_integer():
                value, cls = int(value), int
            if cls is int:
                if low <= value <= high:
                    return value
                raise _Bad(path, f"{value} is out of the {kind} range")
        elif kind == "string":
            if cls is str:
                return value
        elif kind == "boolean":
            if cls is bool:
                return value
        elif kind == "null":
            if value is None:
                return value
        elif kind == "bytes":
            if cls is bytes:
                return value
        elif kind == "enum":
            if cls is str and value in schema["symbols"]:
                return value
            raise _Bad(path, f"expected one of {', '.join(schema['symbols'])}, got {show(value)}")
        elif kind == "fixed":
            if cls is bytes and len(value) == schema["size"]:
                return value
        elif kind == "array":
            if cls is list or cls is tuple:
                items = schema["items"]
                return [self.coerce(items, v, f"{path}[{i}]") for i, v in enumerate(value)]
        elif kind == "map":
            if cls is dict:
                out = {}
                for k, v in value.items():
                    if k.__class__ is not str:
                        raise _Bad(path, f"map keys must be strings, got {show(k)}")
                    out[k] = self.coerce(schema["values"], v, f"{path}[{k!r}]")
                return out
        elif kind in ("record", "error") and cls is dict:
            return self.record(schema, value, path + ".")
        if value is None:
            raise _Bad(path, f"expected {self.describe(schema)}, got null")
        raise _Bad(path, f"expected {self.describe(schema)}, got {show(value)}")

    def record(self, schema: dict[str, Any], value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out = {}
        for f in schema["fields"]:
            name = f["name"]
            v = value.get(name, _MISSING)
            if v is _MISSING:
                if self.optional(f):
                    continue
                raise _Bad(prefix + name, f"missing (expected {self.describe(f['type'])})")
            out[name] = self.coerce(f["type"], v, prefix + name)
        return out

    def exact(self, schema: Any, value: Any) -> bool:
        """``value`` already has the schema's type (slow; for the rare paths)."""
        schema = self.resolve(schema)
        if isinstance(schema, list):
            return any(self._exact(self.resolve(b), value) for b in schema)
        return self._exact(schema, value)

    def _exact(self, schema: Any, value: Any) -> bool:
        """``value`` is already of the (resolved, non-union) schema's type."""
        kind = schema if isinstance(schema, str) else schema["type"]
        cls = value.__class__
        if kind in ("double", "float"):
            top = FLOAT_MAX if kind == "float" else DOUBLE_MAX  # a nan fails both comparisons
            return cls is float and -top <= value <= top
        if kind == "int":
            return cls is int and INT_MIN <= value <= INT_MAX
        if kind == "long":
            return cls is int and LONG_MIN <= value <= LONG_MAX
        if kind == "string":
            return cls is str
        if kind == "boolean":
            return cls is bool
        if kind == "null":
            return value is None
        if kind == "bytes":
            return cls is bytes
        if kind == "enum":
            return cls is str and value in schema["symbols"]
        return False  # containers and records: the coercing walk decides


def output_projection(
    schema: dict[str, Any], topic: str, exclude: Iterable[str] = ()
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """``fn(record) -> output dict``: the record's values of the schema's fields (but
    ``exclude``), in the schema's field order and types; raises :class:`OutputSchemaViolation`.

    ``schema`` is a record schema as written in its file (or parsed); built once per output.
    """
    types = _Types(schema)
    skip = set(exclude)
    fields = [f for f in schema["fields"] if f["name"] not in skip]
    consts: dict[str, Any] = {}

    def fix(r: dict[str, Any], i: int) -> Any:
        """The value of field ``i``, which failed the strict check, coerced (or an error)."""
        f = fields[i]
        try:
            return types.coerce(f["type"], r[f["name"]], f["name"])
        except _Bad as bad:
            raise OutputSchemaViolation(topic, bad.path, bad.detail) from None

    def missing(i: int) -> None:
        f = fields[i]
        if not types.optional(f):
            raise OutputSchemaViolation(topic, f["name"], f"missing (expected {types.describe(f['type'])})")

    if not fields:
        return lambda r: {}
    checks = [types.strict(f["type"], f"v{i}", consts) for i, f in enumerate(fields)]
    # some field is absent: the optional ones stay absent, a required one is an error
    lines = ["def some(r):", "    o = {}"]
    for i, f in enumerate(fields):
        lines += [
            f"    v{i} = r.get({f['name']!r}, _M)",
            f"    if v{i} is _M:",
            f"        missing({i})",
            "    else:",
            f"        if not ({checks[i]}):",
            f"            v{i} = fix(r, {i})",
            f"        o[{f['name']!r}] = v{i}",
        ]
    lines += ["    return o", "", "def project(r):", "    try:"]
    lines += [f"        v{i} = r[{f['name']!r}]" for i, f in enumerate(fields)]
    lines += ["    except KeyError:", "        return some(r)"]
    for i in range(len(fields)):
        lines += [f"    if not ({checks[i]}):", f"        v{i} = fix(r, {i})"]
    lines.append("    return {" + ", ".join(f"{f['name']!r}: v{i}" for i, f in enumerate(fields)) + "}")
    namespace: dict[str, Any] = {
        "fix": fix,
        "missing": missing,
        "_M": _MISSING,
        "__builtins__": _BUILTINS,
        **consts,
    }
    exec(compile("\n".join(lines) + "\n", f"<output projection {topic}>", "exec"), namespace)
    return namespace["project"]


def field_conformer(
    schema: dict[str, Any], topic: str, names: Iterable[str]
) -> Callable[[dict[str, Any]], None] | None:
    """``fn(output)``: the named fields of ``output`` (e.g. set by a route) in the schema's
    types, in place; raises :class:`OutputSchemaViolation`. None when no name is a field."""
    types = _Types(schema)
    wanted = set(names)
    fields = [f for f in schema["fields"] if f["name"] in wanted]
    if not fields:
        return None
    consts: dict[str, Any] = {}
    checks = []

    def fix(out: dict[str, Any], i: int) -> None:
        f = fields[i]
        name = f["name"]
        v = out.get(name, _MISSING)
        try:
            if v is _MISSING:
                if not types.optional(f):
                    raise _Bad(name, f"missing (expected {types.describe(f['type'])})")
                return
            out[name] = types.coerce(f["type"], v, name)
        except _Bad as bad:
            raise OutputSchemaViolation(topic, bad.path, bad.detail) from None

    for i, f in enumerate(fields):
        check = types.strict(f["type"], "v", consts)
        checks.append(f"    v = o.get({f['name']!r}, _M)\n    if not ({check}):\n        fix(o, {i})")
    source = "def conform(o):\n" + "\n".join(checks) + "\n"
    namespace: dict[str, Any] = {"fix": fix, "_M": _MISSING, "__builtins__": _BUILTINS, **consts}
    exec(compile(source, f"<output fields {topic}>", "exec"), namespace)
    return namespace["conform"]
