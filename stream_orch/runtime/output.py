"""Batched producing: everything a processed batch emits leaves in one ``send_batch`` per partition.

``send`` per record costs a future, a lock and a task wake-up per record (about 62k records/s
on our 2-core machine); a record batch per partition reaches about 400k/s. A batch's outputs,
retries, dead letters and changelog writes are collected in an :class:`Outbox`, grouped by the
input partition (the *task*) they belong to, so that under exactly-once each task's records can
go into that task's transaction; at-least-once sends them all on one producer.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
from collections.abc import Callable, Coroutine, Sequence
from functools import partial
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder

from stream_orch.transport.records import AVAILABLE as WRITTEN_HERE
from stream_orch.transport.records import RecordBatch, decode_headers

Headers = Sequence[tuple[str, bytes]]
FLUSH_TIMEOUT_S = 30.0  # longest wait for the acknowledgements of one batch
# key, value, timestamp ms, headers: a list, or bytes as Kafka writes a record's headers (the
# router's lineage headers, already encoded: transport/records.py)
Record = tuple[bytes | None, bytes | None, int | None, Headers | bytes]
# (topic, partition) -> records: what one hand-over gives a producer
Pending = dict[tuple[str, int], list[Record]]
_NO_HEADERS: list[tuple[str, bytes]] = []  # aiokafka's record builder wants a list; never mutated


_M = 0x5BD1E995  # murmur2's mixing constant
_MASK = 0xFFFFFFFF
_WORDS: dict[int, Callable[[bytes], tuple[int, ...]]] = {}  # key length // 4 -> unpacker


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), as aiokafka's but 1.3x
    (9-byte keys) to 2x (25 bytes) faster: the 4-byte words come out of one ``struct`` call
    and every step masks once instead of after each operation."""
    length = len(data)
    h = 0x9747B28C ^ length
    n = length >> 2
    if n:
        words = _WORDS.get(n)
        if words is None:
            words = _WORDS[n] = struct.Struct(f"<{n}I").unpack_from
        for k in words(data):
            k = (k * _M) & _MASK
            k = ((k ^ (k >> 24)) * _M) & _MASK
            h = ((h * _M) & _MASK) ^ k
    tail = length & 3
    if tail:
        base = length & ~3
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h = ((h ^ data[base]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


class PartitionMap:
    """Kafka's default partitioning (murmur2 of the key), cached per topic and key."""

    _CACHE_LIMIT = 200_000  # keys per topic

    def __init__(self, partitions: dict[str, int]) -> None:
        self._partitions = partitions
        self._caches: dict[str, dict[bytes, int]] = {}
        self._rr = itertools.count()

    def count(self, topic: str) -> int:
        return self._partitions[topic]

    def set_count(self, topic: str, n: int) -> None:
        self._partitions[topic] = n
        self._caches.pop(topic, None)  # every cached partition of the topic may be wrong now

    def cache(self, topic: str) -> dict[bytes, int]:
        """The cached partitions of ``topic``'s keys, for callers that look up many keys (a key
        not in it is asked of :meth:`of`)."""
        cache = self._caches.get(topic)
        if cache is None:
            cache = self._caches[topic] = {}
        return cache

    def of(self, topic: str, key: bytes | None) -> int:
        if key is None:
            return next(self._rr) % self._partitions[topic]
        cache = self._caches.get(topic)
        if cache is None:
            cache = self._caches[topic] = {}
        hit = cache.get(key)
        if hit is None:
            hit = (murmur2(key) & 0x7FFFFFFF) % self._partitions[topic]
            if len(cache) >= self._CACHE_LIMIT:
                # Forget the older half (dicts keep insertion order) rather than everything: with
                # more live keys than the limit, wiping made every key pay murmur2 again at once.
                for old in list(itertools.islice(cache, len(cache) // 2)):
                    del cache[old]
            cache[key] = hit
        return hit


class Outbox:
    """What one batch emits, by (task, topic, partition); a task is an input partition number."""

    def __init__(self, partitions: PartitionMap) -> None:
        self._partitions = partitions
        self._pending: dict[tuple[int, str, int], list[Record]] = {}

    def add(
        self,
        task: int,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None = None,
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> None:
        if partition is None:
            partition = self._partitions.of(topic, key)
        records = self._pending.get((task, topic, partition))
        if records is None:
            records = self._pending[(task, topic, partition)] = []
        records.append((key, value, timestamp_ms, headers or _NO_HEADERS))

    def records_for(self, task: int, topic: str, partition: int) -> list[Record]:
        """The list of ``task``'s pending records for ``partition`` of ``topic``, as a
        :class:`Routed` list (made when absent): a caller that adds many records (a
        :class:`Lane`) appends to it itself."""
        key = (task, topic, partition)
        records = self._pending.get(key)
        if records.__class__ is not Routed:
            records = self._pending[key] = Routed(records or ())
        return records  # type: ignore[return-value]

    def extend(self, task: int, topic: str, partition: int, records: list[Record]) -> None:
        """Records of one task for one partition of ``topic``, in order (a table's changelog
        records of one partition: no lookup, no call per record)."""
        same = self._pending.get((task, topic, partition))
        if same is None:
            self._pending[(task, topic, partition)] = list(records)
        else:
            same.extend(records)

    def partition_count(self, topic: str) -> int:
        return self._partitions.count(topic)

    def __len__(self) -> int:
        return sum(len(r) for r in self._pending.values())

    def take(self) -> dict[int, Pending]:
        """Everything added since the last take, by task; the outbox is empty afterwards."""
        by_task: dict[int, Pending] = {}
        for (task, topic, partition), records in self._pending.items():
            by_task.setdefault(task, {})[(topic, partition)] = records
        self._pending = {}
        return by_task

    def discard(self) -> None:
        """Forget what was added (the batch is being abandoned)."""
        self._pending = {}


class Lane:
    """One output topic's share of a batch in an :class:`Outbox`, for a caller that appends
    record by record (the router): it looks the partition up in :attr:`cache` while the key
    is fresh and appends to :attr:`lists`, the current task's pending list per partition.

    The router did this in a second pass over the batch's records per topic (partition cache,
    list lookup, append): by then a batch's records (about 1 MB for 2,000 forwarded records)
    had left the CPU's cache, and a py-spy profile of a forwarding run put a fifth of routing
    in that pass. Per record the caller does, in order::

        if lane.task != task: lane.switch(task)
        partition = lane.cache.get(key)
        if partition is None: partition = lane.partition(key)
        records = lane.lists.get(partition)
        if records is None: records = lane.open(partition)
        records.append(record)
    """

    __slots__ = ("_outbox", "_tasks", "cache", "lists", "task", "topic")

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.task = -1
        self.cache: dict[bytes, int] = {}  # the topic's partition per key (PartitionMap.cache)
        self.lists: dict[int, list[Record]] = {}  # partition -> the current task's pending list
        self._outbox: Outbox | None = None
        self._tasks: dict[int, dict[int, list[Record]]] = {}

    def begin(self, outbox: Outbox) -> None:
        """Start a batch: what the lane held belongs to an outbox taken since (or discarded)."""
        self._outbox = outbox
        self.cache = outbox._partitions.cache(self.topic)
        self.task = -1
        self.lists = {}
        self._tasks = {}

    def switch(self, task: int) -> None:
        lists = self._tasks.get(task)
        if lists is None:
            lists = self._tasks[task] = {}
        self.task, self.lists = task, lists

    def partition(self, key: bytes | None) -> int:
        """A key not in :attr:`cache` (hashed and cached), or round robin without one."""
        assert self._outbox is not None
        return self._outbox._partitions.of(self.topic, key)

    def open(self, partition: int) -> list[Record]:
        assert self._outbox is not None
        records = self.lists[partition] = self._outbox.records_for(self.task, self.topic, partition)
        return records


class Routed(list):  # type: ignore[type-arg]
    """A pending list the router's lanes append to: its records' headers may be bytes (lineage
    headers encoded once: transport/records.py), which only :class:`RecordBatch` takes as they
    are. Other lists (changelog records, dead letters) carry header lists, which aiokafka's C
    builder appends faster (0.14 µs a record without headers, against 0.4 here)."""

    __slots__ = ()  # no instance dict: ``append`` is looked up as fast as on a list


def merged(by_task: dict[int, Pending]) -> Pending:
    """All tasks' records as one hand-over (at-least-once sends them on one producer)."""
    if len(by_task) == 1:
        return next(iter(by_task.values()))
    out: Pending = {}
    for pending in by_task.values():
        for tp, records in pending.items():
            have = out.get(tp)
            if have is None:
                out[tp] = records
            else:
                if records.__class__ is Routed and have.__class__ is not Routed:
                    have = out[tp] = Routed(have)
                have.extend(records)
    return out


Acked = dict[tuple[str, int], int]  # (topic, partition) -> offset of the last record acknowledged


async def hand_over(producer: AIOKafkaProducer, pending: Pending) -> Coroutine[Any, Any, Acked]:
    """Give ``pending`` to the producer as record batches and return an awaitable of the broker's
    acknowledgements (the last offset written per partition: a table's checkpoint), so the caller
    can work meanwhile.

    send_batch waits for room in the producer's buffer; a producer that lost its broker may never
    make room, so taking the batch is bounded like its acknowledgement."""
    try:
        return await asyncio.wait_for(_send(producer, pending), FLUSH_TIMEOUT_S)
    except TimeoutError:
        raise TimeoutError(f"the producer did not take a batch within {FLUSH_TIMEOUT_S:.0f}s") from None


async def _send(producer: AIOKafkaProducer, pending: Pending) -> Coroutine[Any, Any, Acked]:
    sent: list[tuple[asyncio.Future[Any], int]] = []  # (future of a record batch, its record count)
    new_batch = _record_batches(producer)
    for (topic, partition), records in pending.items():
        written = records.__class__ is Routed and new_batch is not None
        if records.__class__ is Routed and not written:  # aiokafka's builder takes header lists only
            records = [
                (k, v, ts, decode_headers(h) if h.__class__ is bytes else h) for k, v, ts, h in records
            ]
        make, fill = (new_batch, _written) if written else (producer.create_batch, _fill)
        batch: Any = make()  # type: ignore[misc]
        n = fill(batch, records, 0, topic)
        while n < len(records):  # the batch is full: send it, the rest goes into the next
            sent.append((await producer.send_batch(batch, topic, partition=partition), batch.record_count()))
            batch = make()  # type: ignore[misc]
            n = fill(batch, records, n, topic)
        sent.append((await producer.send_batch(batch, topic, partition=partition), batch.record_count()))
    return _acknowledged(sent)


def _record_batches(producer: AIOKafkaProducer) -> Callable[[], RecordBatch] | None:
    """Record batches written by :class:`~stream_orch.transport.records.RecordBatch` with the
    producer's batch size and transactional flag (what ``create_batch`` would give its
    builder), or None where aiokafka's builder must do it: a compressed topic's batches, or no
    C CRC in aiokafka."""
    accumulator = getattr(producer, "_message_accumulator", None)
    if accumulator is None or accumulator._compression_type or not WRITTEN_HERE:
        return None
    txn = producer._txn_manager
    return partial(RecordBatch, accumulator._batch_size, txn is not None and txn.transactional_id is not None)


def _written(batch: RecordBatch, pending: list[Record], start: int, topic: str) -> int:
    """``_fill`` for a :class:`RecordBatch`: the batch is closed afterwards."""
    n = batch.fill(pending, start)
    if n == start and n < len(pending):  # never: the first record always goes in
        raise ValueError(f"record of {len(pending[n][1] or b'')} bytes does not fit a batch for {topic}")
    batch.close()
    return n


def _fill(batch: BatchBuilder, records: list[Record], start: int, topic: str) -> int:
    """Append ``records[start:]`` to ``batch`` until it is full; returns where it stopped. The
    batch is closed.

    Appends go to the batch's record builder itself (aiokafka's C ``DefaultRecordBatchBuilder``):
    ``BatchBuilder.append``'s keyword call, serializer hooks (none: our records are bytes) and
    bookkeeping cost about 0.15 µs per record, a sixth of an append with our lineage headers.
    The builder takes the record's offset within the batch; ``BatchBuilder`` counts the records
    in ``_relative_offset``, set here as its ``append`` would have."""
    append = batch._builder.append
    offset = 0
    n = start
    for key, value, ts, headers in itertools.islice(records, start, None):
        if append(offset, ts, key, value, headers) is None:
            break
        offset += 1
        n += 1
    if offset == 0 and n < len(records):
        value = records[n][1]
        raise ValueError(f"record of {len(value or b'')} bytes does not fit a batch for {topic}")
    batch._relative_offset = offset
    batch.close()
    return n


async def _acknowledged(sent: list[tuple[asyncio.Future[Any], int]]) -> Acked:
    """Wait for the broker's acknowledgement of every batch sent; the last offset per partition."""
    try:
        metas = await asyncio.wait_for(asyncio.gather(*(future for future, _ in sent)), FLUSH_TIMEOUT_S)
    except TimeoutError:
        # Seen after a broker restart: the producer never resolves some batches. Failing the
        # batch makes the node start over (new producer, committed offsets) instead of hanging.
        raise TimeoutError(f"no acknowledgement of a flush within {FLUSH_TIMEOUT_S:.0f}s") from None
    acked: Acked = {}
    for meta, (_, count) in zip(metas, sent, strict=True):
        last = meta.offset + count - 1  # a batch's acknowledgement carries its base offset
        key = (meta.topic, meta.partition)
        if last > acked.get(key, -1):
            acked[key] = last
    return acked


class BatchSender:
    """For tools that produce in chunks: add records, then ``flush`` them on one producer."""

    def __init__(self, producer: AIOKafkaProducer, partitions: PartitionMap) -> None:
        self._producer = producer
        self._outbox = Outbox(partitions)

    def add(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers | None = None) -> None:
        self._outbox.add(0, topic, key, value, headers)

    async def flush(self) -> None:
        """Send everything added so far and wait until the broker acknowledged all of it."""
        by_task = self._outbox.take()
        if by_task:
            await (await hand_over(self._producer, merged(by_task)))
