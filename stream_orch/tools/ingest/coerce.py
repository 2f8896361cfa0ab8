"""A row in its topic's schema, or the reason it is rejected (naming the field).

JSON rows already have types: they go through the worker's output conformer
(:func:`stream_orch.codecs.conform.output_projection`: the schema's fields, ``int`` to
``double``, an integral float to ``long``, enums, nullable fields, required fields present).
CSV rows are strings: each cell is first turned into its field's type as the schema allows
(:func:`text_converter`), then through the same conformer, then encoded with the topic's
codec (JSON here, as ``produce`` writes). A row whose fields all have a column and simple types
is checked in full by its generated converter (the conformer's checks, ranges included) and
skips the conformer, which would return the same dict.

CSV text rules: ``int``/``long`` are decimal integers (sign allowed), ``float``/``double`` any
finite decimal or exponent number, ``boolean`` is true/false/1/0 (any case), an ``enum`` a
symbol, an empty cell is null where the type admits null (else an empty string for a string,
else an error), and arrays, maps and records are JSON text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import orjson

from stream_orch.codecs.avro_types import (
    DOUBLE_MAX,
    FLOAT_MAX,
    INT_MAX,
    INT_MIN,
    LONG_MAX,
    LONG_MIN,
    AvroTypes,
    show,
)
from stream_orch.codecs.conform import OutputSchemaViolation, output_projection

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})


class RowRejected(ValueError):
    """``str(error)`` is the reason written to the rejects file."""


class _NoFit(Exception):
    pass


def _text_to(kind: Any, text: str) -> Any:
    """``text`` as a value of the (resolved, non-union) type ``kind``, or raise _NoFit."""
    name = kind if isinstance(kind, str) else kind["type"]
    s = text.strip()
    if name == "string":
        return text
    if name in ("int", "long"):
        if _INT.fullmatch(s):
            try:
                return int(s)  # the range is the conformer's check
            except ValueError:  # over 4,300 digits (Python's limit): no long anyway
                pass
    elif name in ("double", "float"):
        if _FLOAT.fullmatch(s):
            value = float(s)
            if math.isfinite(value):
                return value
    elif name == "boolean":
        low = s.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    elif name == "null":
        if text == "":
            return None
    elif name == "enum":
        if s in kind["symbols"]:
            return s
    elif name == "bytes":
        return text.encode("utf-8", "surrogateescape")
    elif name in ("array", "map", "record", "error"):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    raise _NoFit


def text_converter(types: AvroTypes, schema: Any) -> Callable[[str], Any]:
    """A function turning a CSV cell into a value of ``schema`` (raises ``_NoFit``)."""
    resolved = types.resolve(schema)
    if not isinstance(resolved, list):
        if resolved == "string":
            return lambda text: text
        return lambda text: _text_to(resolved, text)
    branches = [types.resolve(b) for b in resolved]
    nullable = "null" in branches
    # strings last: "12" in ["null", "long", "string"] is the long 12
    ordered = [b for b in branches if b not in ("null", "string")] + [b for b in branches if b == "string"]

    def convert(text: str) -> Any:
        if text == "" and nullable:
            return None
        for branch in ordered:
            try:
                return _text_to(branch, text)
            except _NoFit:
                continue
        raise _NoFit

    return convert


def _fast_converter(types: AvroTypes, schema: Any) -> Callable[[str], Any] | None:
    """A quicker converter for the common types (None: the field's text is taken as is). It
    raises _NoFit on anything unusual; the caller then asks :func:`text_converter` why."""
    resolved = types.resolve(schema)
    nullable = False
    if isinstance(resolved, list):
        branches = [types.resolve(b) for b in resolved]
        others = [b for b in branches if b != "null"]
        if len(others) != 1 or len(branches) != 2:
            return text_converter(types, schema)
        nullable, resolved = True, others[0]
    name = resolved if isinstance(resolved, str) else resolved["type"]
    inner: Callable[[str], Any] | None
    if name == "string":
        inner = None
    elif name in ("int", "long"):

        def inner(t: str) -> Any:
            if t.isdigit() and t.isascii():
                return int(t)
            return _text_to(name, t)

    elif name in ("double", "float"):
        match = _FLOAT.fullmatch

        def inner(t: str) -> Any:
            if match(t) is not None and (x := float(t)) - x == 0.0:  # inf - inf is nan
                return x
            raise _NoFit

    elif name == "boolean":
        truth = {"true": True, "false": False, "1": True, "0": False, "True": True, "False": False}

        def inner(t: str) -> Any:
            found = truth.get(t)
            return found if found is not None else _text_to("boolean", t)

    elif name == "enum":
        symbols = frozenset(resolved["symbols"])

        def inner(t: str) -> Any:
            if t in symbols:
                return t
            raise _NoFit

    else:
        return text_converter(types, schema)
    if not nullable:
        return inner
    if inner is None:
        return lambda t: None if t == "" else t
    some = inner
    return lambda t: None if t == "" else some(t)


def _simple_kind(types: AvroTypes, schema: Any) -> tuple[bool, str]:
    """(nullable, the type's name) of a type or a union of null and one type; ("union" for
    any other union)."""
    resolved = types.resolve(schema)
    nullable = False
    if isinstance(resolved, list):
        others = [b for b in (types.resolve(b) for b in resolved) if b != "null"]
        if len(others) != 1 or len(resolved) != 2:
            return False, "union"
        nullable, resolved = True, others[0]
    return nullable, resolved if isinstance(resolved, str) else resolved["type"]


class RowConformer:
    """``conform(record, from_text)`` -> the record in the schema's fields and types, or
    :class:`RowRejected` with ``field 'x': why``."""

    def __init__(self, schema: dict[str, Any], topic: str) -> None:
        self.schema = schema
        self._types = AvroTypes(schema)
        self._project = output_projection(schema, topic)
        self._text = {
            f["name"]: (text_converter(self._types, f["type"]), f["type"]) for f in schema["fields"]
        }
        self._by_header: dict[tuple[str, ...], Callable[[list[str]], dict[str, Any]]] = {}

    def _generate(self, header: tuple[str, ...]) -> Callable[[list[str]], dict[str, Any]]:
        """One generated function converting the cells of a CSV row with these columns, or
        raising RowRejected (the explaining path, :meth:`_explain`, is taken only when a cell
        does not fit). A field without a column stays absent (the conformer says whether it
        may be). When every field has a column and a type checked here in full (the
        conformer's own checks: a string, an int/long/float/double within its range, a
        boolean, an enum symbol, each maybe nullable) the conformer would return the same
        dict, so it is not asked again (a second pass over every value was ~0.3 us a row)."""
        column = {name: i for i, name in enumerate(header)}  # a repeated name: the last one
        namespace: dict[str, Any] = {
            "_NoFit": _NoFit,
            "_conform": self.conform,
            "_explain": lambda row: self._explain(dict(zip(header, row, strict=False))),
        }
        lines, checks, out = ["def convert(row):", "  try:"], [], []
        final = True
        for i, f in enumerate(self.schema["fields"]):
            name = f["name"]
            if name not in column:
                final = False
                continue
            out.append(f"{name!r}: x{i}")
            fast = _fast_converter(self._types, f["type"])
            namespace[f"c{i}"] = fast
            nullable, kind = _simple_kind(self._types, f["type"])
            v = f"row[{column[name]}]"
            # the commonest cases inline (a call per cell is a third of a row's time); anything
            # else through the field's converter
            if fast is None:  # a string, as it is
                expr = v
            elif kind == "string":  # nullable
                expr = f"None if {v} == '' else {v}"
            else:
                if kind in ("int", "long"):
                    expr = f"int(v) if v.isdigit() and v.isascii() else c{i}(v)"
                    low, high = (INT_MIN, INT_MAX) if kind == "int" else (LONG_MIN, LONG_MAX)
                    check = f"{low} <= x{i} <= {high}"
                elif kind in ("double", "float"):
                    # float() takes what the text rules take (and the range check below
                    # turns away its nan and inf), but for underscores and non-ASCII digits
                    expr = f"float(v) if v.isascii() and '_' not in v else c{i}(v)"
                    top = FLOAT_MAX if kind == "float" else DOUBLE_MAX  # nan and inf fail it
                    check = f"{-top!r} <= x{i} <= {top!r}"
                elif kind == "boolean":
                    namespace[f"b{i}"] = {"true": True, "false": False, "1": True, "0": False}
                    expr = f"b{i}[v] if v in b{i} else c{i}(v)"
                    check = ""
                elif kind == "enum":
                    namespace[f"e{i}"] = frozenset(self._types.resolve(f["type"])["symbols"])
                    expr = f"v if v in e{i} else c{i}(v)"
                    check = ""
                else:
                    expr, check, final = f"c{i}(v)", "", False
                if nullable:
                    expr = f"None if v == '' else {expr}"
                    check = check and f"(x{i} is None or {check})"
                lines.append(f"    v = {v}")
                if check:
                    checks.append(check)
            lines.append(f"    x{i} = {expr}")
        if checks:  # out of range: the explaining path names the field and why
            lines += [f"    if not ({' and '.join(checks)}):", "        raise _NoFit"]
        lines += ["  except (_NoFit, ValueError):", "    return _explain(row)"]  # float("x")
        value = "{" + ", ".join(out) + "}"
        lines.append(f"  return {value}" if final else f"  return _conform({value})")
        exec(compile("\n".join(lines) + "\n", "<csv row converter>", "exec"), namespace)
        return namespace["convert"]

    def converter(self, header: list[str]) -> Callable[[list[str]], dict[str, Any]]:
        """``fn(cells)``: a CSV row with these columns in the schema's types, or RowRejected."""
        made = self._by_header.get(tuple(header))
        if made is None:
            made = self._by_header[tuple(header)] = self._generate(tuple(header))
        return made

    def from_cells(self, header: list[str], cells: list[str]) -> dict[str, Any]:
        """A CSV row (its cells under ``header``) in the schema's types, or RowRejected."""
        return self.converter(header)(cells)

    def from_text(self, row: dict[str, str]) -> dict[str, Any]:
        """A CSV row as a dict of column name to cell (see :meth:`from_cells`)."""
        return self.from_cells(list(row), list(row.values()))

    def _explain(self, row: dict[str, str]) -> dict[str, Any]:
        """The row converted field by field: raises RowRejected naming the field that fails."""
        out: dict[str, Any] = {}
        for name, (convert, schema) in self._text.items():
            text = row.get(name)
            if text is None:
                continue  # no such column: the conformer says whether it may be absent
            try:
                out[name] = convert(text)
            except _NoFit:
                what = "empty" if text.strip() == "" else show(text)
                raise RowRejected(
                    f"field {name!r}: expected {self._types.describe(schema)}, got {what}"
                ) from None
        return self.conform(out)

    def conform(self, record: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._project(record)
        except OutputSchemaViolation as exc:
            raise RowRejected(f"field {exc.field!r}: {exc.detail}") from None
