"""What the test driver keeps per topic partition, and what it hands back to a test."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from stream_orch.codecs import codec_for
from stream_orch.codecs.schemas import SchemaRegistry
from stream_orch.reliability import headers as H
from stream_orch.topology.models import TopologySpec
from stream_orch.topology.naming import dlq_topic, retry_topics


@dataclass(slots=True)
class Stored:
    """A record in one of the driver's topic partitions: what a consumer would fetch
    (``decode_records`` reads ``key``, ``value``, ``headers``, ``offset`` and ``timestamp``)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: list[tuple[str, bytes]]
    seq: int  # order of arrival over all topics: the driver processes records in this order


@dataclass(frozen=True, slots=True)
class OutputRecord:
    """A record as a test reads it: key as text, value decoded with its topic's codec (JSON or
    Avro; text, or bytes, when it cannot be), headers as text."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: Any
    timestamp: int
    headers: dict[str, str]
    raw_key: bytes | None = field(default=None, repr=False)
    raw_value: bytes | None = field(default=None, repr=False)

    @property
    def reason(self) -> str | None:
        """A dead letter's (or a pending retry's) ``so.error.reason``."""
        return self.headers.get(H.ERROR_REASON)

    @property
    def error(self) -> dict[str, str]:
        """The ``so.error.*`` headers without the prefix: reason, class, message, attempts, ..."""
        prefix = "so.error."
        return {k[len(prefix) :]: v for k, v in self.headers.items() if k.startswith(prefix)}


def text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", errors="replace")


def header_dict(headers: list[tuple[str, bytes]]) -> dict[str, str]:
    return {name: text(value) or "" for name, value in headers}

    return 0


def encode_value(spec: TopologySpec, schemas: SchemaRegistry, topic: str, value: Any) -> bytes | None:
    """A value piped into ``topic`` as a producer would send it (see ``TopologyTestDriver.pipe``)."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    topic_spec = spec.topics.get(topic)
    if topic_spec is not None and topic_spec.format == "avro":
        return codec_for(topic_spec, schemas).encode(value)
    # JSON as a producer sends it: not checked against the schema (raw inputs are messy)
    return orjson.dumps(value)


def value_decoder(spec: TopologySpec, schemas: SchemaRegistry, topic: str) -> Callable[[bytes], Any]:
    """How a test reads the values of ``topic``."""
    topic_spec = spec.topics.get(topic)
    if topic_spec is not None:
        return codec_for(topic_spec, schemas).decode
    for node in spec.nodes.values():  # retries and dead letters carry the input's bytes
        if topic == dlq_topic(node) or topic in retry_topics(node):
            return codec_for(spec.topics[node.input], schemas).decode
    return orjson.loads  # changelogs


def output_record(record: Stored, decoders: Mapping[str, Callable[[bytes], Any]]) -> OutputRecord:
    """A stored record as a test reads it (a value its topic's codec cannot read stays text, or
    bytes)."""
    value: Any = record.value
    if value is not None:
        try:
            value = decoders[record.topic](value)
        except Exception:
            with contextlib.suppress(UnicodeDecodeError):
                value = value.decode("utf-8")
    return OutputRecord(
        record.topic,
        record.partition,
        record.offset,
        text(record.key),
        value,
        record.timestamp,
        header_dict(record.headers),
        record.key,
        record.value,
    )
