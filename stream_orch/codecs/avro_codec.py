"""Avro values with fastavro (schemaless: the schema comes from ``schemas/``, not the message)."""

from __future__ import annotations

from io import BytesIO
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from stream_orch.codecs.base import Codec, DecodeError, EncodeError
from stream_orch.codecs.validation import Validator


class AvroCodec(Codec):
    """Avro binary encoding of one record schema.

    Built with the *plain* parsed schema (see :meth:`SchemaRegistry.plain`): logical types are
    not applied, so a ``timestamp-millis`` field is an int of epoch ms in the dict both ways.
    """

    format = "avro"

    def __init__(self, schema: dict[str, Any], schema_name: str | None = None) -> None:
        self.schema = schema
        self.schema_name = schema_name or schema.get("name")
        self._validator: Validator | None = None

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
