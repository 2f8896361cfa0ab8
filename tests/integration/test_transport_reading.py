"""Reading partitions to their end on the real broker (transport.reading): restore progress for
/metrics, early stop, and a partition whose log starts at its end (everything deleted) counts as
read at once."""

from __future__ import annotations

import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete

from stream_orch.transport.reading import read_to_end

pytestmark = pytest.mark.integration


async def _topic_with(bootstrap: str, topic: str, per_partition: list[int]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=len(per_partition), replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, key=f"k{i % 3000}".encode(), value=b'{"n": %d}' % i, partition=p)
            for p, n in enumerate(per_partition)
            for i in range(n)
        ]
        for f in futures:
            await f
    finally:
        await producer.stop()


async def test_progress_counts_every_record_and_ends_with_nothing_remaining(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    await _topic_with(kafka_bootstrap, unique_topic, [15_000, 9_000])
    latest: dict[tuple[int, bytes], bytes] = {}  # what a compacted table would keep
    calls: list[tuple[int, int]] = []
    tps = [TopicPartition(unique_topic, p) for p in (0, 1)]
    n = await read_to_end(
        {"bootstrap_servers": kafka_bootstrap},
        tps,
        lambda r: latest.__setitem__((r.partition, r.key), r.value),
        progress=lambda restored, remaining: calls.append((restored, remaining)),
    )
    assert n == 24_000 == sum(r for r, _ in calls)
    assert len(latest) == 6_000  # 3,000 keys per partition, last value wins
    assert orjson.loads(latest[(0, b"k2999")]) == {"n": 14_999}
    remaining = [left for _, left in calls]
    assert len(calls) > 1, "more than one fetch: progress is reported while reading"
    assert remaining == sorted(remaining, reverse=True) and remaining[-1] == 0
    assert remaining[0] < 24_000


async def test_a_partition_that_starts_at_its_end_is_already_restored(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    await _topic_with(kafka_bootstrap, unique_topic, [50, 40])
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:  # what compaction and retention can leave: a log whose start offset is its end offset
        await admin.delete_records({TopicPartition(unique_topic, 0): RecordsToDelete(50)})
    finally:
        await admin.close()
    seen: list[int] = []
    n = await read_to_end(
        {"bootstrap_servers": kafka_bootstrap},
        [TopicPartition(unique_topic, p) for p in (0, 1)],
        lambda r: seen.append(r.partition),
        timeout_s=30,
    )
    assert n == 40 and set(seen) == {1}


async def test_a_handler_that_returns_true_stops_the_read(kafka_bootstrap: str, unique_topic: str) -> None:
    await _topic_with(kafka_bootstrap, unique_topic, [100])
    seen: list[int] = []

    def handle(record) -> bool:
        seen.append(record.offset)
        return len(seen) == 7

    n = await read_to_end({"bootstrap_servers": kafka_bootstrap}, [TopicPartition(unique_topic, 0)], handle)
    assert n == 7 and seen == list(range(7))
