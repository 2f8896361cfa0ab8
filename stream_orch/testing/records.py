"""What the test driver keeps per topic partition, and what it hands back to a test."""

from __future__ import annotations

from collections.abc import Iterator
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


def header_int(headers: list[tuple[str, bytes]], name: str) -> int:
    """An integer header (0 when absent or not a number), as the worker's retry pacer reads it."""
    for key, value in headers:
        if key == name:
            try:
                return int(value)
            except (TypeError, ValueError):
                return 0
    return 0


class TopicTable:
    """A table fed by a topic, as :class:`~stream_orch.state.global_table.GlobalTable` keeps it
    (the latest value per record key, a null value deletes, a value that cannot be decoded is
    counted and skipped), fed by the records the driver writes to the topic instead of a
    consumer. Read-only for steps, like a global table."""

    def __init__(self, name: str, topic: str, decode: Any) -> None:
        self.name = name
        self.topic = topic
        self._decode = decode
        self._data: dict[str, Any] = {}
        self.decode_errors = 0

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        k = key.decode(errors="replace")
        if value is None:
            self._data.pop(k, None)
            return
        try:
            self._data[k] = self._decode(value)
        except Exception:
            self.decode_errors += 1

    def get(self, key: str, partition: int, default: Any = None) -> Any:
        return self._data.get(key, default)

    def set(self, key: str, value: Any, partition: int) -> None:
        raise TypeError(f"table {self.name!r} is fed by topic {self.topic!r} and is read-only")

    def delete(self, key: str, partition: int) -> None:
        self.set(key, None, partition)

    def items(self, partition: int) -> Iterator[tuple[str, Any]]:
        return iter(list(self._data.items()))

    def scan(self, partition: int, start: str, end: str) -> Iterator[tuple[str, Any]]:
        return iter([(k, v) for k, v in self._data.items() if start <= k < end])

    def __len__(self) -> int:
        return len(self._data)
