"""A node consumer's fetched records handed over as aiokafka's own C records, batch by batch.

For every record of a fetch response aiokafka's ``PartitionRecords`` resumes a Python generator
through a Python ``__next__``, calls ``_consumer_record`` and builds a ``ConsumerRecord`` (a
dataclass of eleven fields, its headers copied into a tuple): about 0.55 µs per record on top of
reading the record batch itself (``_crecords``' record objects, the batch CRC), measured on the
benchmark's 260-byte records. ``decode_records`` reads five of those fields (offset, timestamp,
key, value, headers), all of which the C record has.

:func:`install` keeps aiokafka's fetcher as it is (its requests, its ``FetchResult`` with the
position checks after a seek, a pause or a rebalance, ``getmany``'s ``max_records``) and swaps
only what a ``FetchResult`` takes its records from: :class:`BatchRecords`, which hands over each
record batch's records as a list through one C iterator chain and works out the fetch position
from how far the current batch's list was taken. What ``PartitionRecords`` decides per batch
is decided the same way here: a batch whose CRC does not match raises ``CorruptRecordException``
(the position stays at that batch, which is fetched again); under read_committed a batch of a
producer whose transaction was aborted is skipped (the fetch response lists the aborted
transactions: producer and first offset), until that producer's abort marker; control batches
(the markers) are never records; records below the fetch position (a fetch that starts inside
a batch) are not handed over; the position moves past a batch's last offset even when
compaction removed its last records.

This reaches into aiokafka's private fetcher (``Fetcher._records``, ``FetchResult``,
``PartitionRecords``' fields), as ``runtime/output.py`` does into its producer: aiokafka is
pinned below 0.15 and tests/unit/test_fetched_records.py breaks if those internals change.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterator
from itertools import chain
from operator import length_hint
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.consumer.fetcher import READ_COMMITTED, FetchResult, PartitionRecords
from aiokafka.errors import CorruptRecordException, KafkaError
from aiokafka.record.control_record import ABORT_MARKER, ControlRecord

log = logging.getLogger(__name__)


class _Cursor:
    """Where the reading of one fetched partition is; shared by :class:`BatchRecords` and its
    batch generator (which must not hold the ``BatchRecords``: a generator left suspended, when
    a seek drops the rest of a fetch, would keep it and its response buffer in a cycle)."""

    __slots__ = ("position", "records", "taken")

    def __init__(self, position: int) -> None:
        self.position = position  # the fetch position before ``records``
        self.records: list[Any] | None = None  # the batch being handed over
        self.taken: Iterator[Any] | None = None  # the iterator over ``records`` the chain reads


class BatchRecords:
    """What a ``FetchResult`` reads one partition's fetched records from, in place of aiokafka's
    ``PartitionRecords`` (made from one: its record batches, aborted transactions, settings).
    ``FetchResult.getall`` iterates it (the chain of the batches' list iterators, C all the
    way), ``getone`` calls ``next`` on it, and both read ``next_fetch_offset`` afterwards."""

    def __init__(self, original: PartitionRecords) -> None:
        self._tp = original._tp
        self._cursor = _Cursor(original.next_fetch_offset)
        # PartitionRecords sorted them by first offset already; a copy: the generator consumes it
        aborted = list(original._aborted_transactions)
        read_committed = original._isolation_level == READ_COMMITTED
        batches = _batches(
            original._records, self._cursor, aborted, original._check_crcs, read_committed, self._tp
        )
        self._chain = chain.from_iterable(batches)
        # The original's generator, never started, and the original hold each other: left so,
        # the pair and the fetch response's bytes would wait for a garbage collection (after
        # the worker's gc.freeze, rare: 30 MB more peak RSS in a 200k-record forwarding run)
        original._records_iterator = None

    @property
    def next_fetch_offset(self) -> int:
        """The offset after the last record handed over (or past the batches passed over)."""
        cursor = self._cursor
        taken, records = cursor.taken, cursor.records
        if taken is None or records is None:
            return cursor.position
        left = length_hint(taken)
        if left == len(records):
            return cursor.position
        return records[-left - 1].offset + 1  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[Any]:
        return self._chain

    def __next__(self) -> Any:
        return next(self._chain)


def _batches(
    memory: Any,
    cursor: _Cursor,
    aborted: list[tuple[int, int]],
    check_crcs: bool,
    read_committed: bool,
    tp: Any,
) -> Iterator[Iterator[Any]]:
    """Each record batch's records to hand over, as an iterator the cursor can measure."""
    aborted_producers: set[int] = set()
    while memory.has_next():
        batch = memory.next_batch()
        if check_crcs and not batch.validate_crc():
            raise CorruptRecordException(f"Invalid CRC - {tp}")
        producer = batch.producer_id
        if read_committed and producer is not None:
            # a transaction aborted at or before this batch: its producer's batches are skipped
            # until its abort marker
            while aborted and aborted[0][1] <= batch.base_offset:
                aborted_producers.add(aborted.pop(0)[0])
            if batch.is_control_batch:
                marker = next(batch, None)
                if marker is None:
                    raise KafkaError("Control batch did not contain any records")
                if ControlRecord.parse(marker.key) == ABORT_MARKER:
                    # discard: a marker may come for a transaction with no batch in this fetch
                    aborted_producers.discard(producer)
            elif batch.is_transactional and producer in aborted_producers:
                cursor.position = batch.next_offset
                continue
        if batch.is_control_batch:  # markers, whatever the isolation level
            cursor.position = batch.next_offset
            continue
        position = cursor.position
        base = getattr(batch, "base_offset", None)  # message format v0/v1 batches have none
        if base is not None and base >= position:
            records = list(batch)
        else:
            records = [record for record in batch if record.offset >= position]
        if records:
            cursor.records = records
            cursor.taken = taken = iter(records)
            yield taken
            cursor.records = cursor.taken = None
        # past the batch's last offset, also when compaction removed its last records
        cursor.position = batch.next_offset


class _FetchResults(OrderedDict):  # type: ignore[type-arg]
    """``Fetcher._records``: a fetched partition's ``FetchResult`` reads :class:`BatchRecords`."""

    def __setitem__(self, tp: Any, result: Any) -> None:
        if type(result) is FetchResult and type(result._partition_records) is PartitionRecords:
            result._partition_records = BatchRecords(result._partition_records)
        super().__setitem__(tp, result)


def install(consumer: AIOKafkaConsumer) -> bool:
    """Make the started ``consumer``'s ``getmany`` return C records (offset, timestamp, key,
    value, headers; no topic or partition: ``getmany`` keys them by partition) instead of
    ``ConsumerRecord``. Returns False, changing nothing, where aiokafka's fetcher is not the one
    this was written for."""
    fetcher = getattr(consumer, "_fetcher", None)
    results = getattr(fetcher, "_records", None)
    if type(results) is not OrderedDict:
        log.warning("aiokafka's fetcher is not the one expected; fetched records stay ConsumerRecords")
        return False
    replacement = _FetchResults()
    for tp, result in results.items():  # taken as they are: one may be read partly already
        OrderedDict.__setitem__(replacement, tp, result)
    fetcher._records = replacement  # type: ignore[union-attr]
    return True
