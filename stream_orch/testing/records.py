"""What the test driver keeps per topic partition, and what it hands back to a test."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stream_orch.reliability import headers as H


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
