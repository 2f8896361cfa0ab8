"""A row in its topic's schema, or the reason it is rejected (naming the field).

JSON rows already have types: they go through the worker's output conformer
(:func:`stream_orch.codecs.conform.output_projection`: the schema's fields, ``int`` to
``double``, an integral float to ``long``, enums, nullable fields, required fields present).
CSV rows are strings: each cell is first turned into its field's type as the schema allows
(:func:`text_converter`), then through the same conformer, then encoded with the topic's
codec (JSON here, as ``produce`` writes).

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

from stream_orch.codecs.avro_types import AvroTypes, show
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
            return int(s)  # the range is the conformer's check
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

    def from_text(self, row: dict[str, str]) -> dict[str, Any]:
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
