"""The latest row per record key of a topic, as a read-only table (the steps' Table protocol).

Who reads the topic applies its records: a worker's follower (:class:`~stream_orch.state.
global_table.GlobalTable`) or the topology test driver. A null value deletes the key; a value
that cannot be decoded, or does not match the topic's schema (:func:`table_row_decoder`), is
skipped and counted, so the key keeps the row it had.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stream_orch.codecs.schemas import SchemaRegistry
    from stream_orch.topology.models import TopicSpec


class InvalidRow(ValueError):
    """A decoded row that does not match its topic's schema; ``str()`` names the field."""


def table_row_decoder(topic: TopicSpec, schemas: SchemaRegistry | None) -> Callable[[bytes], Any]:
    """Bytes of a table-feeding topic's value -> the row, checked against the topic's schema:
    raises DecodeError (bad bytes) or :class:`InvalidRow` (``field 'avg_amount': expected double,
    got str 'x'``). An Avro topic's decoder already enforces its schema; a topic without a
    schema is not checked."""
    from stream_orch.codecs import codec_for

    codec = codec_for(topic, schemas)
    if topic.format == "avro" or not topic.schema_ or schemas is None:
        return codec.decode
    decode, check = codec.decode, schemas.validator(topic.schema_)

    def decode_checked(data: bytes) -> Any:
        row = decode(data)
        problem = check(row)
        if problem is not None:
            raise InvalidRow(problem)
        return row

    return decode_checked


class TopicRows:
    def __init__(self, name: str, topic: str, decode: Callable[[bytes], Any]) -> None:
        self.name = name
        self.topic = topic
        self._decode = decode
        self._data: dict[str, Any] = {}
        self.decode_errors = 0
        self.invalid_rows = 0  # rows that did not match the topic's schema (table_row_decoder)

    def apply(self, key: bytes | None, value: bytes | None) -> tuple[str, Exception] | None:
        """Apply one record; when its row is skipped, (what is wrong with it, the error)."""
        if key is None:
            return None
        text = key.decode(errors="replace")
        if value is None:
            self._data.pop(text, None)
            return None
        try:
            self._data[text] = self._decode(value)
        except InvalidRow as exc:
            self.invalid_rows += 1
            return "does not match the topic's schema", exc
        except Exception as exc:  # a bad row must not stop the table
            self.decode_errors += 1
            return "cannot be decoded", exc
        return None

    @property
    def rows(self) -> Mapping[str, Any]:
        """The rows by key, for a reader of many (``enrich``): each is replaced whole by
        :meth:`apply`, never changed in place, so a reader may keep what it derived from a row
        for as long as the key holds that same object."""
        return self._data

    def get(self, key: str, partition: int, default: Any = None) -> Any:
        return self._data.get(key, default)

    def set(self, key: str, value: Any, partition: int) -> None:
        raise TypeError(f"table {self.name!r} is fed by topic {self.topic!r} and is read-only")

    def delete(self, key: str, partition: int) -> None:
        self.set(key, None, partition)

    def drop(self, key: str, partition: int) -> None:
        self.set(key, None, partition)

    def items(self, partition: int) -> Iterator[tuple[str, Any]]:
        return iter(list(self._data.items()))

    def scan(self, partition: int, start: str, end: str) -> Iterator[tuple[str, Any]]:
        return iter([(k, v) for k, v in self._data.items() if start <= k < end])

    def __len__(self) -> int:
        return len(self._data)
