"""transport/fetched.py: a fetch response's records through BatchRecords are aiokafka's, record
for record and position for position, on record batches built as the broker returns them
(transactions, abort and commit markers, compaction gaps, a fetch starting inside a batch).

The last tests break if aiokafka's fetcher internals that fetched.py relies on change."""

from __future__ import annotations

import asyncio
import inspect
import struct
import sys
from collections import OrderedDict
from typing import Any
from unittest import mock

import pytest
from aiokafka import TopicPartition
from aiokafka.consumer.fetcher import (
    READ_COMMITTED,
    READ_UNCOMMITTED,
    Fetcher,
    FetchResult,
    PartitionRecords,
)
from aiokafka.consumer.subscription_state import SubscriptionState
from aiokafka.errors import CorruptRecordException
from aiokafka.record._crc32c import crc as crc32c
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords

from stream_orch.transport import fetched
from stream_orch.transport.fetched import BatchRecords

TP = TopicPartition("t", 0)
ABORT, COMMIT = 0, 1


def batch(
    base: int,
    deltas: list[int],
    *,
    producer: int = -1,
    transactional: bool = False,
    marker: int | None = None,
    last_delta: int | None = None,
) -> bytes:
    """One v2 record batch at ``base``, its records at ``base + delta`` (gaps: compaction), a
    control batch holding one ``marker`` when given, its last offset ``base + last_delta``."""
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=int(transactional), producer_id=producer,
        producer_epoch=0 if producer >= 0 else -1, base_sequence=0 if producer >= 0 else -1,
        batch_size=1 << 20,
    )  # fmt: skip
    if marker is not None:
        builder.append(
            0, timestamp=1000, key=struct.pack(">hh", 0, marker), value=b"\0\0\0\0\0\0", headers=[]
        )
    else:
        for d in deltas:
            headers = [("h", str(base + d).encode())] if d % 2 else []
            builder.append(
                d,
                timestamp=1000 + d,
                key=f"k{base + d}".encode(),
                value=f"v{base + d}".encode(),
                headers=headers,
            )
    raw = bytearray(builder.build())
    raw[0:8] = struct.pack(">q", base)
    if marker is not None or last_delta is not None:
        attributes = struct.unpack_from(">h", raw, 21)[0] | (0x20 if marker is not None else 0)
        struct.pack_into(">h", raw, 21, attributes)
        if last_delta is not None:
            struct.pack_into(">i", raw, 23, last_delta)
        struct.pack_into(">I", raw, 17, crc32c(bytes(raw[21:])))
    return bytes(raw)


class _State:
    paused = False

    def __init__(self, position: int) -> None:
        self.position = position

    def consumed_to(self, position: int) -> None:
        self.position = position


class _Assignment:
    active = True

    def __init__(self, position: int) -> None:
        self.state = _State(position)

    def state_value(self, tp: TopicPartition) -> _State:
        return self.state


def drain(
    data: bytes,
    *,
    light: bool,
    fetch_offset: int = 0,
    aborted: list[tuple[int, int]] | None = None,
    isolation: int = READ_UNCOMMITTED,
    max_records: int | None = None,
) -> list[tuple[list[tuple[Any, ...]], int]]:
    """What FetchResult.getall hands over call by call, and the position after each call."""
    records = PartitionRecords(TP, MemoryRecords(data), aborted, fetch_offset, None, None, True, isolation)
    assignment = _Assignment(fetch_offset)
    result = FetchResult(
        TP, assignment=assignment, partition_records=BatchRecords(records) if light else records, backoff=0
    )
    calls = []
    while result.has_more():
        got = result.getall(max_records)
        calls.append(
            (
                [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in got],
                assignment.state.position,
            )
        )
    return calls


def same_as_aiokafka(data: bytes, **kwargs: Any) -> list[tuple[list[tuple[Any, ...]], int]]:
    for max_records in (None, 1, 2, 3, 5, 100):
        ours = drain(data, light=True, max_records=max_records, **kwargs)
        assert ours == drain(data, light=False, max_records=max_records, **kwargs), max_records
    return drain(data, light=True, **kwargs)


def offsets(calls: list[tuple[list[tuple[Any, ...]], int]]) -> list[int]:
    return [r[0] for got, _ in calls for r in got]


def test_plain_batches_hand_over_every_record_with_its_fields() -> None:
    data = batch(0, [0, 1, 2]) + batch(3, [0, 1]) + batch(5, list(range(8)))
    calls = same_as_aiokafka(data)
    assert offsets(calls) == list(range(13))
    assert calls[0][0][1] == (1, 1001, b"k1", b"v1", [("h", b"1")])
    assert calls[-1][1] == 13


def test_compaction_gaps_inside_between_and_at_the_end_of_batches() -> None:
    # offsets 1, 4 removed inside, 6..9 removed at the first batch's end, 10..11 between batches
    data = batch(0, [0, 2, 3, 5], last_delta=9) + batch(12, [0, 3], last_delta=6)
    calls = same_as_aiokafka(data)
    assert offsets(calls) == [0, 2, 3, 5, 12, 15]
    assert calls[-1][1] == 19  # past the last batch's last offset, not its last record


def test_a_fetch_inside_a_batch_hands_over_nothing_below_the_fetch_offset() -> None:
    data = batch(10, list(range(6))) + batch(16, [0, 1])
    assert offsets(same_as_aiokafka(data, fetch_offset=13)) == [13, 14, 15, 16, 17]


def test_read_committed_skips_aborted_transactions_and_every_marker() -> None:
    data = (
        batch(0, [0, 1], producer=7, transactional=True)  # aborted
        + batch(2, [0, 1], producer=8, transactional=True)  # committed
        + batch(4, [], producer=7, transactional=True, marker=ABORT)
        + batch(5, [], producer=8, transactional=True, marker=COMMIT)
        + batch(6, [0, 1, 2])  # not transactional
        + batch(9, [0], producer=7, transactional=True)  # the same producer's next transaction
        + batch(10, [], producer=7, transactional=True, marker=COMMIT)
        + batch(11, [0, 1], producer=9, transactional=True)  # aborted, its marker not yet fetched
    )
    aborted = [(9, 11), (7, 0)]  # as the broker lists them: producer, first offset (any order)
    calls = same_as_aiokafka(data, aborted=aborted, isolation=READ_COMMITTED)
    assert offsets(calls) == [2, 3, 6, 7, 8, 9]
    assert calls[-1][1] == 13
    # read_uncommitted: the aborted records too, the markers still not
    uncommitted = same_as_aiokafka(data, aborted=aborted, isolation=READ_UNCOMMITTED)
    assert offsets(uncommitted) == [0, 1, 2, 3, 6, 7, 8, 9, 11, 12]


def test_an_abort_marker_of_a_transaction_without_batches_here_and_a_fetch_of_markers_only() -> None:
    data = batch(0, [], producer=5, transactional=True, marker=ABORT) + batch(1, [0, 1])
    assert offsets(same_as_aiokafka(data, aborted=[(5, 0)], isolation=READ_COMMITTED)) == [1, 2]
    markers = batch(0, [], producer=5, transactional=True, marker=COMMIT)
    markers += batch(1, [], producer=5, transactional=True, marker=COMMIT)
    calls = same_as_aiokafka(markers, isolation=READ_COMMITTED)
    assert offsets(calls) == [] and calls[-1][1] == 2  # the position moves past them


def test_a_corrupt_batch_raises_and_the_position_stays_before_it() -> None:
    good, bad = batch(0, [0, 1]), bytearray(batch(2, [0, 1, 2]))
    bad[-1] ^= 0xFF
    data = good + bytes(bad) + batch(5, [0])
    for light in (True, False):
        records = PartitionRecords(TP, MemoryRecords(data), None, 0, None, None, True, READ_UNCOMMITTED)
        assignment = _Assignment(0)
        result = FetchResult(
            TP,
            assignment=assignment,
            partition_records=BatchRecords(records) if light else records,
            backoff=0,
        )
        assert [r.offset for r in result.getall(2)] == [0, 1]
        with pytest.raises(CorruptRecordException):
            result.getall(2)
        assert result.getall(2) == [] and not result.has_more()
        assert assignment.state.position == 2  # fetched again from the corrupt batch


def test_a_seek_between_two_calls_drops_the_rest_of_the_fetch() -> None:
    records = PartitionRecords(TP, MemoryRecords(batch(0, list(range(5)))), None, 0, None, None, True, 0)
    assignment = _Assignment(0)
    result = FetchResult(TP, assignment=assignment, partition_records=BatchRecords(records), backoff=0)
    assert [r.offset for r in result.getall(2)] == [0, 1]
    assignment.state.position = 0  # the consumer was sought back (a take-over)
    assert result.getall(2) == [] and not result.has_more()


def test_a_drained_fetch_leaves_nothing_holding_its_response_for_the_garbage_collector() -> None:
    """Without a cycle: the worker collects garbage rarely (gc.freeze, high thresholds), and a
    fetch response kept until then is megabytes."""
    data = bytes(bytearray(batch(0, [0, 1, 2]) + batch(3, [0, 1])))
    held = sys.getrefcount(data)
    for max_records in (None, 2):
        records = PartitionRecords(TP, MemoryRecords(data), None, 0, None, None, True, READ_UNCOMMITTED)
        result = FetchResult(
            TP, assignment=_Assignment(0), partition_records=BatchRecords(records), backoff=0
        )
        while result.has_more():
            result.getall(max_records)
        del records, result
        assert sys.getrefcount(data) == held, max_records


# ---------------------------------------------------------------- aiokafka's internals used


def test_aiokafka_fetcher_stores_fetch_results_the_way_install_relies_on() -> None:
    """_proc_fetch_request builds a PartitionRecords per partition and stores its FetchResult
    with ``self._records[tp] = ...``; fetched_records reads them with getall; FetchResult
    reads its records by iteration, next() and next_fetch_offset only."""
    request = inspect.getsource(Fetcher._proc_fetch_request)
    assert "PartitionRecords(" in request and "self._records[tp] = FetchResult(" in request
    assert "res_or_error.getall(max_records)" in inspect.getsource(Fetcher.fetched_records)
    assert "self._records = collections.OrderedDict()" in inspect.getsource(Fetcher.__init__)
    result = inspect.getsource(FetchResult)
    assert "for msg in self._partition_records:" in result
    assert "next(self._partition_records, None)" in result
    assert result.count("_partition_records.") == result.count("_partition_records.next_fetch_offset")
    fields = inspect.signature(PartitionRecords).parameters
    assert list(fields)[:4] == ["tp", "records", "aborted_transactions", "fetch_offset"]
    records = PartitionRecords(TP, MemoryRecords(b""), [(1, 5), (2, 3)], 4, None, None, False, READ_COMMITTED)
    assert records._aborted_transactions == [(2, 3), (1, 5)]  # sorted by first offset
    assert (records._tp, records._check_crcs, records._isolation_level) == (TP, False, READ_COMMITTED)
    assert inspect.isgenerator(records._records_iterator)  # the cycle BatchRecords breaks


async def test_install_makes_a_real_fetcher_hand_over_c_records() -> None:
    client = mock.MagicMock()
    client._loop = asyncio.get_running_loop()
    client._metadata_max_age_ms = 300_000
    subscriptions = SubscriptionState()
    subscriptions.assign_from_user({TP})
    subscriptions.seek(TP, 0)
    fetcher = Fetcher(client, subscriptions)
    fetcher._fetch_task.cancel()  # no requests: the test puts the fetch result in itself
    try:
        consumer = mock.Mock(_fetcher=fetcher)
        assert fetched.install(consumer) and type(fetcher._records) is not OrderedDict
        assignment = subscriptions.subscription.assignment
        records = PartitionRecords(TP, MemoryRecords(batch(0, [0, 1, 2])), None, 0, None, None, True, 0)
        fetcher._records[TP] = FetchResult(TP, assignment=assignment, partition_records=records, backoff=0)
        assert isinstance(fetcher._records[TP]._partition_records, BatchRecords)
        got = await fetcher.fetched_records((TP,), 0, max_records=2)
        assert [r.offset for r in got[TP]] == [0, 1] and assignment.state_value(TP).position == 2
        assert [(r.key, r.value) for r in (await fetcher.fetched_records((TP,), 0))[TP]] == [(b"k2", b"v2")]
        assert assignment.state_value(TP).position == 3 and TP not in fetcher._records
    finally:
        await fetcher.close()


def test_install_changes_nothing_on_a_fetcher_it_does_not_know() -> None:
    consumer = mock.Mock(_fetcher=mock.Mock(_records={}))
    assert not fetched.install(consumer)
    assert consumer._fetcher._records == {}
