"""Avro values with fastavro (schemaless: the schema comes from ``schemas/``, not the message)."""

from __future__ import annotations

from io import BytesIO
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from stream_orch.codecs.avro_types import PRIMITIVES
from stream_orch.codecs.base import Codec, DecodeError, EncodeError, non_finite
from stream_orch.codecs.validation import Validator


class AvroCodec(Codec):
    """Avro binary encoding of one record schema.

    Built with the *plain* parsed schema (see :meth:`SchemaRegistry.plain`): logical types are
    not applied, so a ``timestamp-millis`` field is an int of epoch ms in the dict both ways.

    A float or double that is inf or nan is ``malformed_avro`` when decoding, as JSON's
    ``1e999`` is ``malformed_json``: no output (JSON has neither) and no table (its changelog
    is JSON) can carry it. Only the fields whose type can hold a float are looked at.
    """

    format = "avro"

    def __init__(self, schema: dict[str, Any], schema_name: str | None = None) -> None:
        self.schema = schema
        self.schema_name = schema_name or schema.get("name")
        self._validator: Validator | None = None
        self._floaty = tuple(f["name"] for f in schema.get("fields", ()) if _may_hold_float(f["type"]))

    def decode(self, data: bytes) -> dict[str, Any]:
        if data is None:
            raise DecodeError("malformed_avro", "no value (tombstone)")
        buf = BytesIO(data)
        try:
            value = schemaless_reader(buf, self.schema, None)
        except UnicodeDecodeError as exc:
            raise DecodeError("invalid_utf8", f"a string is not UTF-8: {exc.reason}") from None
        except Exception as exc:  # EOFError, IndexError (bad enum or union index), ValueError, ...
            raise DecodeError("malformed_avro", f"{type(exc).__name__}: {exc}") from None
        if buf.tell() != len(data):
            raise DecodeError("malformed_avro", f"{len(data) - buf.tell()} trailing bytes after the record")
        for name in self._floaty:
            v = value.get(name)
            # inf - inf and nan - nan are nan, which is true
            found = ((name, v) if v - v else None) if v.__class__ is float else non_finite(v, name)
            if found is not None:
                raise DecodeError("malformed_avro", f"{found[0]}: {found[1]} is not a finite number")
        return value

    def encode(self, value: dict[str, Any]) -> bytes:
        buf = BytesIO()
        try:
            schemaless_writer(buf, self.schema, value)
        except Exception as exc:  # ValueError, TypeError, struct.error, ...
            if self._validator is None:
                self._validator = Validator(self.schema)
            problem = self._validator(value)
            raise EncodeError("schema_mismatch", problem or f"{type(exc).__name__}: {exc}") from None
        return buf.getvalue()


def _may_hold_float(schema: Any) -> bool:
    """Whether a value of the type can be or contain a float (a named type: assumed so)."""
    if isinstance(schema, str):
        return schema in ("float", "double") or schema not in PRIMITIVES
    if isinstance(schema, list):
        return any(_may_hold_float(branch) for branch in schema)
    if not isinstance(schema, dict):
        return True
    kind = schema.get("type")
    if kind in ("enum", "fixed"):
        return False
    if kind in ("record", "error"):
        return any(_may_hold_float(f["type"]) for f in schema.get("fields", ()))
    if kind == "array":
        return _may_hold_float(schema["items"])
    if kind == "map":
        return _may_hold_float(schema["values"])
    return _may_hold_float(kind)
