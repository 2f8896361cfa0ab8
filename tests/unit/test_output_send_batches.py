"""The hand-over fills record batches itself (aiokafka's C builder, or transport/records.py's where
the producer's settings allow): every record lands once, in order, with its key, value,
timestamp and headers (a list, or encoded as the router hands lineage headers over), split over
as many batches as the size limit needs, and the acknowledgement reports the last offset
written per partition."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch
from aiokafka.structs import RecordMetadata

from stream_orch.runtime import output
from stream_orch.transport.records import encode_headers


class _Producer:
    """Record batches of ``size`` bytes, kept as the broker would get them."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.sent: list[tuple[str, int, bytes, int]] = []  # topic, partition, batch bytes, count
        self.next_offset: dict[tuple[str, int], int] = {}

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.size, 0)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> asyncio.Future[Any]:
        data = bytes(batch._build())
        self.sent.append((topic, partition, data, batch.record_count()))
        base = self.next_offset.get((topic, partition), 0)
        self.next_offset[(topic, partition)] = base + batch.record_count()
        future = asyncio.get_running_loop().create_future()
        future.set_result(
            RecordMetadata(topic, partition, TopicPartition(topic, partition), base, None, 0, -1)
        )
        return future


class _Written(_Producer):
    """A producer whose batches transport/records.py writes (the settings output._record_batches reads)."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self._message_accumulator = SimpleNamespace(_batch_size=size, _compression_type=0)
        self._txn_manager = None


def _read(data: bytes) -> list[tuple[bytes | None, bytes | None, int, list[tuple[str, bytes]]]]:
    batch = DefaultRecordBatch(bytearray(data))
    return [(r.key, r.value, r.timestamp, list(r.headers)) for r in batch]


@pytest.mark.parametrize("producer_class", [_Producer, _Written])
def test_records_land_once_in_order_over_as_many_batches_as_needed(producer_class: type[_Producer]) -> None:
    records_a = [
        (f"k{i}".encode(), b"v" * (50 + i), 1_700_000_000_000 + i, [("so.n", str(i).encode())])
        for i in range(40)
    ]
    records_b = [(None, b"tomb" if i % 2 else None, None, []) for i in range(5)]
    # as the router leaves them: lineage headers encoded, or a list where there were more; a
    # producer without RecordBatch (compressed) gets them decoded for aiokafka's builder
    encoded = output.Routed(
        [(k, v, ts, encode_headers(h)) for k, v, ts, h in records_a[:20]] + records_a[20:]
    )
    pending = {("a", 0): encoded, ("b", 3): records_b}
    producer = producer_class(size=1024)

    async def go() -> dict[tuple[str, int], int]:
        return await (await output._send(producer, pending))  # type: ignore[arg-type]

    acked = asyncio.run(go())

    assert len([s for s in producer.sent if s[0] == "a"]) > 1  # the size limit split topic a
    got: dict[tuple[str, int], list[Any]] = {}
    for topic, partition, data, count in producer.sent:
        read = _read(data)
        assert len(read) == count > 0
        got.setdefault((topic, partition), []).extend(read)
    assert got[("a", 0)] == [(k, v, ts, h) for k, v, ts, h in records_a]
    assert [(k, v) for k, v, _, _ in got[("b", 3)]] == [(k, v) for k, v, _, _ in records_b]
    assert acked == {("a", 0): len(records_a) - 1, ("b", 3): len(records_b) - 1}


@pytest.mark.parametrize("producer_class", [_Producer, _Written])
def test_a_record_larger_than_a_batch_goes_alone(producer_class: type[_Producer]) -> None:
    big = (b"k", b"x" * 5000, None, [])
    small = (b"k", b"y", None, [])
    producer = producer_class(size=1024)

    async def go() -> dict[tuple[str, int], int]:
        return await (await output._send(producer, {("t", 0): [small, big, small]}))  # type: ignore[arg-type]

    assert asyncio.run(go()) == {("t", 0): 2}
    assert [count for *_, count in producer.sent] == [1, 1, 1]
    assert [r[1] for _, _, data, _ in producer.sent for r in _read(data)] == [b"y", b"x" * 5000, b"y"]


def test_merged_tasks_keep_the_routers_list_kind() -> None:
    plain = [(b"k", b"1", None, [])]
    routed = output.Routed([(b"k", b"2", None, encode_headers([("h", b"x")]))])
    out = output.merged({0: {("t", 0): plain}, 1: {("t", 0): routed}})
    assert out[("t", 0)].__class__ is output.Routed
    assert [v for _, v, _, _ in out[("t", 0)]] == [b"1", b"2"]
