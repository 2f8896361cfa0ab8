"""Record batches written by transport/records.py: byte for byte those of aiokafka's C builder, and
usable where aiokafka's producer takes a BatchBuilder (its private MessageBatch side: this test
breaks if that changes)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder, MessageBatch
from aiokafka.record.default_records import DefaultRecordBatch
from aiokafka.structs import TopicPartition

from stream_orch.runtime import output
from stream_orch.transport.records import RecordBatch, decode_headers, encode_headers

LINEAGE = [
    ("so.topology", b"fraud_detection"),
    ("so.src.offset", b"77"),
    ("so.processed_at", b"1700000000000"),
]
T0 = 1_700_000_000_000


def records() -> list[tuple[Any, Any, Any, Any]]:
    """Every shape a field can take: null key, value and header value, long values (lengths of
    two and three varint bytes), timestamps before the first and far after it, no headers."""
    return [
        (b"A-1", b'{"n":1}', T0, LINEAGE),
        (None, b"v", T0 + 5, []),
        (b"k", None, T0 - 3, [("trace", None), ("x", b"")]),
        (b"", b"x" * 9000, T0 + 10_000, LINEAGE),
        (b"k" * 300, b"y" * 70_000, T0 + 3_600_000_000, [("\u00e9t\u00e9", b"\x00\xff")]),
        *((b"K%d" % n, b"w" * n, T0 + n, LINEAGE) for n in range(200)),
    ]


def built_by_aiokafka(
    batch_size: int, recs: list[Any], transactional: bool = False
) -> list[tuple[int, bytes]]:
    """(record count, bytes) of each batch aiokafka's builder makes of ``recs``, as _fill fills it."""
    out, n = [], 0
    while n < len(recs):
        batch = BatchBuilder(batch_size, 0, is_transactional=transactional)
        n = output._fill(batch, [(k, v, t, list(h)) for k, v, t, h in recs], n, "t")
        if transactional:
            batch._set_producer_state(42, 3, 7)
        out.append((batch.record_count(), bytes(batch._build())))
    return out


def built_here(batch_size: int, recs: list[Any], transactional: bool = False) -> list[tuple[int, bytes]]:
    out, n = [], 0
    while n < len(recs):
        batch = RecordBatch(batch_size, transactional)
        n = output._written(batch, recs, n, "t")
        if transactional:
            batch._set_producer_state(42, 3, 7)
        out.append((batch.record_count(), bytes(batch._build())))
    return out


@pytest.mark.parametrize("batch_size", [1024 * 1024, 16 * 1024, 1000])
@pytest.mark.parametrize("transactional", [False, True])
def test_batches_are_aiokafkas_byte_for_byte(batch_size: int, transactional: bool) -> None:
    recs = records()
    expected = built_by_aiokafka(batch_size, recs, transactional)
    assert built_here(batch_size, recs, transactional) == expected
    encoded = [(k, v, t, encode_headers(h)) for k, v, t, h in recs]  # as the router hands them over
    assert built_here(batch_size, encoded, transactional) == expected
    if batch_size == 1000:
        assert len(expected) > 10  # the batches end where aiokafka's end


def test_what_is_written_reads_back_with_a_valid_crc() -> None:
    ((_, data),) = built_here(1024 * 1024, records()[:5])
    batch = DefaultRecordBatch(data)
    assert batch.validate_crc()
    got = [(r.key, r.value, r.timestamp, r.headers) for r in batch]
    assert got == [(k, v, t, list(h)) for k, v, t, h in records()[:5]]


def test_headers_encoded_and_decoded_are_the_same() -> None:
    for _, _, _, headers in records()[:5]:
        assert decode_headers(encode_headers(headers)) == list(headers)


def test_aiokafkas_message_batch_and_producer_take_it() -> None:
    """What send_batch's MessageBatch calls on its builder, and the producer settings that
    output._record_batches reads (aiokafka < 0.15: these are private)."""

    async def check() -> None:
        plain = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", max_batch_size=5000)
        new_batch = output._record_batches(plain)
        assert new_batch is not None
        batch = new_batch()
        assert batch._batch_size == 5000 and not batch._attributes
        recs = records()[:3]
        assert output._written(batch, recs, 0, "t") == 3
        wrapped = MessageBatch(TopicPartition("t", 0), batch, ttl=30, linger_time=0)
        assert wrapped.record_count == 3 and not wrapped.is_empty()
        (expected,) = built_by_aiokafka(5000, recs)
        assert bytes(wrapped.get_data_buffer()) == expected[1]
        compressed = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", compression_type="gzip")
        assert output._record_batches(compressed) is None  # aiokafka's builder compresses
        txn = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", transactional_id="x")
        made = output._record_batches(txn)
        assert made is not None and made()._attributes == 0x10
        state = RecordBatch(5000, True)
        output._written(state, recs, 0, "t")
        wrapped = MessageBatch(TopicPartition("t", 0), state, ttl=30, linger_time=0)
        wrapped.set_producer_state(42, 3, 7)
        (expected,) = built_by_aiokafka(5000, recs, transactional=True)
        assert bytes(wrapped.get_data_buffer()) == expected[1]

    asyncio.run(check())
