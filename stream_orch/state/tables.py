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
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

log = logging.getLogger(__name__)

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


async def read_to_end(
    client_args: dict[str, Any],
    partitions: list[TopicPartition],
    apply: Any,
    *,
    timeout_s: float = 120.0,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Read ``partitions`` from the beginning to their current end, calling ``apply(record)``.

    Used to restore local tables and to load global tables before a node starts. ``progress``
    gets (records applied since its last call, records still to read) after every fetch, so a
    long restore shows on /metrics while it runs.
    """
    if not partitions:
        return 0
    consumer = AIOKafkaConsumer(
        **client_args, enable_auto_commit=False, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    count = reported = 0
    try:
        consumer.assign(partitions)
        end = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        # A compacted changelog can start at its end (everything deleted and cleaned up).
        position = {tp: await consumer.position(tp) for tp in partitions}
        remaining = {tp for tp in partitions if position[tp] < end[tp]}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while remaining:
            if loop.time() > deadline:
                raise TimeoutError(f"restoring {sorted(map(str, remaining))} took over {timeout_s}s")
            batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=10_000)
            for tp, records in batches.items():
                for record in records:
                    apply(record)
                    count += 1
                if records:
                    position[tp] = records[-1].offset + 1
            for tp in list(remaining):
                if position[tp] < end[tp]:  # also past gaps that compaction left at the end
                    position[tp] = await consumer.position(tp)
                if position[tp] >= end[tp]:
                    remaining.discard(tp)
            if progress is not None:
                progress(count - reported, sum(end[tp] - position[tp] for tp in remaining))
                reported = count
    finally:
        await consumer.stop()
    return count


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
        consumer = AIOKafkaConsumer(
            **self._client_args, enable_auto_commit=False, auto_offset_reset="earliest", group_id=None
        )
        await consumer.start()
        self._consumer = consumer
        tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        pending = {tp for tp in tps if end[tp] > 0}
        while pending:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for records in batches.values():
                for record in records:
                    self._apply(record)
            for tp in list(pending):
                if await consumer.position(tp) >= end[tp]:
                    pending.discard(tp)
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
