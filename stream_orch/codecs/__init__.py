"""Schemas (``schemas/*.avsc``, parsed once), JSON and Avro codecs, and field-naming validation.

Public API::

    SchemaRegistry(directory)          .get(name) .plain(name) .names() .fields(name)
                                       .field_names(name) .validator(name) .raw(name)
    Validator(parsed_schema)(record)   -> None | "field 'amount': expected double, got str '12x'"
    codec_for(topic_spec, registry)    -> JsonCodec | AvroCodec
    Codec.decode(bytes) -> dict        raises DecodeError(reason in malformed_json, invalid_utf8,
                                       malformed_avro)
    Codec.encode(dict) -> bytes        raises EncodeError (NonFiniteNumber: inf or nan in JSON)
    Codec.decode_many / encode_many    batch forms (decode_many returns DecodeError in place)
    projection(schema) -> fn(dict) -> dict with only the schema's fields
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stream_orch.codecs.avro_codec import AvroCodec
from stream_orch.codecs.base import Codec, DecodeError, EncodeError, NonFiniteNumber, projection
from stream_orch.codecs.json_codec import JsonCodec
from stream_orch.codecs.schemas import DEFAULT_SCHEMA_DIR, SchemaError, SchemaRegistry
from stream_orch.codecs.validation import Validator

if TYPE_CHECKING:
    from stream_orch.topology.models import TopicSpec

__all__ = [
    "DEFAULT_SCHEMA_DIR",
    "AvroCodec",
    "Codec",
    "DecodeError",
    "EncodeError",
    "JsonCodec",
    "NonFiniteNumber",
    "SchemaError",
    "SchemaRegistry",
    "Validator",
    "codec_for",
    "projection",
]


def codec_for(topic_spec: TopicSpec, registry: SchemaRegistry | None = None) -> Codec:
    """The codec of a topic: JSON (schema optional) or Avro (schema required, from ``registry``)."""
    name = topic_spec.schema_
    if topic_spec.format == "avro":
        if not name:
            raise SchemaError("an avro topic needs `schema:` naming a file in schemas/")
        if registry is None:
            raise SchemaError("an avro topic needs a SchemaRegistry")
        return AvroCodec(registry.plain(name), schema_name=name)
    if name and registry is not None:
        registry.get(name)  # an unknown schema is an error here too
    return JsonCodec(schema_name=name)
