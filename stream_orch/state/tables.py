"""Changelog-backed tables.

A local table is split by the partition of the node input (as Kafka Streams and Faust do), so a
worker holds exactly the state of the partitions it owns. Every change is buffered and written to
the compacted changelog topic ``<topology>.<table>.changelog`` once per batch, *before* the
batch's offsets are committed: a crash can replay a batch but never loses a committed change.
On assignment the worker rebuilds a partition's state by reading its changelog partition.

A global table is fed by a topic (usually compacted) and every worker reads all of its partitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_orch.transport import clients
from stream_orch.transport.reading import read_until_end

log = logging.getLogger(__name__)

LOAD_TIMEOUT_S = 120.0  # a global table that cannot be read to its end by then stops the worker

_TOMBSTONE = object()


class LocalTable:
    """State of the partitions this worker owns; values must be JSON-serialisable."""

    def __init__(self, name: str, changelog: str) -> None:
        self.name = name
        self.changelog = changelog
        self._data: dict[int, dict[str, Any]] = {}
        self._dirty: dict[int, dict[str, Any]] = {}
        self.restored_records = 0

    # --- the Table protocol used by steps
    def get(self, key: str, partition: int, default: Any = None) -> Any:
        part = self._data.get(partition)
        if part is None:
            return default
        return part.get(key, default)

    def set(self, key: str, value: Any, partition: int) -> None:
        self._data.setdefault(partition, {})[key] = value
        self._dirty.setdefault(partition, {})[key] = value

    def delete(self, key: str, partition: int) -> None:
        part = self._data.get(partition)
        if part is not None and key in part:
            del part[key]
            self._dirty.setdefault(partition, {})[key] = _TOMBSTONE

    def items(self, partition: int) -> Iterator[tuple[str, Any]]:
        return iter(list(self._data.get(partition, {}).items()))

    def __len__(self) -> int:
        return sum(len(p) for p in self._data.values())

    # --- used by the executor
    def drain_changes(self) -> list[tuple[int, bytes, bytes | None]]:
        """Changes since the last drain as (partition, key, value or None for a tombstone)."""
        out: list[tuple[int, bytes, bytes | None]] = []
        for partition, changes in self._dirty.items():
            for key, value in changes.items():
                out.append((partition, key.encode(), None if value is _TOMBSTONE else orjson.dumps(value)))
        self._dirty = {}
        return out

    def partitions(self) -> set[int]:
        return set(self._data)

    def claim(self, partition: int) -> None:
        """Mark a partition as owned (possibly empty) before its changelog is replayed."""
        self._data.setdefault(partition, {})

    def forget(self, partitions: set[int]) -> None:
        """Drop state of partitions this worker no longer owns."""
        for p in partitions:
            self._data.pop(p, None)
            self._dirty.pop(p, None)

    def apply(self, partition: int, key: bytes, value: bytes | None) -> None:
        part = self._data.setdefault(partition, {})
        k = key.decode()
        if value is None:
            part.pop(k, None)
        else:
            part[k] = orjson.loads(value)
        self.restored_records += 1

    def owns(self, partition: int) -> bool:
        return partition in self._data


class GlobalTable:
    """A table every worker holds in full, kept up to date by a background reader."""

    def __init__(
        self, name: str, topic: str, partitions: int, client_args: dict[str, Any], decode: Any
    ) -> None:
        self.name = name
        self.topic = topic
        self.partitions = partitions
        self._client_args = client_args
        self._decode = decode
        self._data: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self.decode_errors = 0

    def get(self, key: str, partition: int, default: Any = None) -> Any:
        return self._data.get(key, default)

    def set(self, key: str, value: Any, partition: int) -> None:
        raise TypeError(f"global table {self.name!r} is fed by topic {self.topic!r} and is read-only")

    def delete(self, key: str, partition: int) -> None:
        self.set(key, None, partition)

    def items(self, partition: int) -> Iterator[tuple[str, Any]]:
        return iter(list(self._data.items()))

    def __len__(self) -> int:
        return len(self._data)

    def _apply(self, record: Any) -> None:
        if record.key is None:
            return
        key = record.key.decode(errors="replace")
        if record.value is None:
            self._data.pop(key, None)
            return
        try:
            self._data[key] = self._decode(record.value)
        except Exception:  # a bad profile must not stop the table; the feeding node DLQs it
            self.decode_errors += 1

    async def start(self) -> None:
        """Load the topic to its current end, then follow it in the background."""
        consumer = clients.reader(self._client_args)
        await consumer.start()
        self._consumer = consumer
        tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        await read_until_end(consumer, tps, self._apply, timeout_s=LOAD_TIMEOUT_S, past_end=True)
        self._task = asyncio.create_task(self._follow(), name=f"global-table:{self.name}")

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=10_000)
            for records in batches.values():
                for record in records:
                    self._apply(record)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer:
            await self._consumer.stop()
