"""Exactly-once fencing on the real broker, with the runtime's own delivery.

aiokafka 0.14 sends TxnOffsetCommit without the KIP-447 group generation, so the broker cannot
tell a zombie's offsets from the owner's by the group. The first test shows that hole; the
second shows how stream-orch closes it: one transactional id per (topology, node, partition),
so the next owner of a partition fences the previous one when it initialises the same id, and
nothing the zombie sends afterwards becomes visible or moves the group's offsets.
"""

from __future__ import annotations

import asyncio
from functools import partial

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from kafka_helpers import create_topic, unique_name

from stream_orch.runtime.delivery import BatchOut
from stream_orch.runtime.transactions import ExactlyOnce
from stream_orch.transport import clients

pytestmark = pytest.mark.integration


async def _committed(bootstrap: str, group: str, tp: TopicPartition) -> int | None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        meta = (await admin.list_consumer_group_offsets(group)).get(tp)
        return None if meta is None else meta.offset
    finally:
        await admin.close()


async def _read_committed(bootstrap: str, topic: str) -> list[bytes]:
    consumer = clients.reader({"bootstrap_servers": bootstrap})
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        values: list[bytes] = []
        while await consumer.position(tp) < end:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                values.extend(r.value for r in records)
        return values
    finally:
        await consumer.stop()


async def test_without_kip_447_a_transaction_outside_the_group_can_move_its_offset_back(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    """Why one transactional producer per worker would not be safe: the broker takes a stale
    offset from any transactional producer. If this starts failing, aiokafka may send
    TxnOffsetCommit with the group generation now (KIP-447)."""
    await create_topic(kafka_bootstrap, unique_topic)
    tp, group = TopicPartition(unique_topic, 0), unique_name("eos-group")
    owner = AIOKafkaConsumer(
        unique_topic, bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await owner.start()
    zombie = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=unique_name("zombie"))
    await zombie.start()
    try:
        while not owner.assignment():
            await owner.getmany(timeout_ms=200)
        await owner.commit({tp: 10})
        async with zombie.transaction():
            await zombie.send_offsets_to_transaction({tp: 3}, group)
        committed = None
        for _ in range(50):  # the commit marker lands asynchronously
            if (committed := await _committed(kafka_bootstrap, group, tp)) != 10:
                break
            await asyncio.sleep(0.1)
        assert committed == 3
    finally:
        await zombie.stop()
        await owner.stop()


class _Seen:
    def __init__(self) -> None:
        self.batches = 0

    def flushed(self, seconds: float) -> None: ...

    def committed(self, offsets: object, seconds: float) -> None: ...

    def delivered(self, out: object) -> None:
        self.batches += 1


def _batch(topic: str, value: bytes, input_tp: TopicPartition, offset: int) -> BatchOut:
    records = {0: {(topic, 0): [(b"k", value, None, [])]}}
    return BatchOut(records=records, changes={}, offsets={input_tp: offset})


async def test_the_next_owner_of_a_partition_fences_the_zombie(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    output = unique_topic
    source = unique_name("eos-input")
    await create_topic(kafka_bootstrap, output)
    await create_topic(kafka_bootstrap, source)
    input_tp, group, topology = TopicPartition(source, 0), unique_name("eos-group"), unique_name("topo")
    make = partial(clients.producer, {"bootstrap_servers": kafka_bootstrap})
    zombie_seen, owner_seen = _Seen(), _Seen()
    zombie = ExactlyOnce(make, group, topology, "node", zombie_seen)
    owner = ExactlyOnce(make, group, topology, "node", owner_seen)
    try:
        await zombie.assign({0})
        await zombie.submit(_batch(output, b"zombie before", input_tp, 5))
        await zombie.settle()
        assert zombie_seen.batches == 1

        await owner.assign({0})  # the partition moved: same transactional id, a new epoch
        await zombie.submit(_batch(output, b"zombie after", input_tp, 3))
        with pytest.raises(KafkaError):
            await zombie.settle()
        await owner.submit(_batch(output, b"owner", input_tp, 10))
        await owner.settle()

        assert await _read_committed(kafka_bootstrap, output) == [b"zombie before", b"owner"]
        assert await _committed(kafka_bootstrap, group, input_tp) == 10
        assert zombie_seen.batches == 1, "the fenced batch must not count as delivered"
    finally:
        await zombie.stop()
        await owner.stop()
