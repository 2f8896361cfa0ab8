"""`dlq replay` streams the DLQ in bounded chunks on the real broker: what it holds in memory is
bounded by the chunk size, not by the DLQ's size, and every dead letter is published once
(counted by ``so.replay.id`` on the target, read_committed)."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections import Counter

import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from kafka_helpers import unique_name

from stream_orch.reliability import dlq
from stream_orch.settings import Settings
from stream_orch.transport import clients

pytestmark = pytest.mark.integration

PAD = 8_000  # bytes of value per dead letter


async def make_topics(bootstrap: str, *topics: tuple[str, int]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, num_partitions=n, replication_factor=1) for t, n in topics])
    finally:
        await admin.close()


async def produce_dead_letters(bootstrap: str, dlq_topic: str, target: str, n: int, pad: int = PAD) -> None:
    """``n`` dead letters of ``target`` (so.error.* headers, the original bytes as the value)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=512 * 1024
    )
    await producer.start()
    try:
        futures = []
        for i in range(n):
            headers = [
                ("so.error.reason", b"unknown_customer"),
                ("so.error.topic", target.encode()),
                ("so.error.partition", b"0"),
                ("so.error.offset", str(i).encode()),
                ("so.error.attempts", b"4"),
                ("trace", b"kept"),
            ]
            value = orjson.dumps({"id": i, "pad": "x" * pad})
            futures.append(await producer.send(dlq_topic, value=value, key=f"k{i}".encode(), headers=headers))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def replay_ids(bootstrap: str, topic: str, isolation: str = "read_committed") -> Counter[str]:
    """How many times each ``so.replay.id`` is on ``topic`` (up to its end offsets now)."""
    seen: Counter[str] = Counter()
    consumer = clients.reader({"bootstrap_servers": bootstrap}, isolation_level=isolation)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer.topics()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        while any(await consumer.position(tp) < end[tp] for tp in tps):
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                for r in records:
                    seen[dict(r.headers)["so.replay.id"].decode()] += 1
    finally:
        await consumer.stop()
    return seen


async def test_replay_holds_at_most_a_chunk(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """3,000 dead letters of 8 KB (24 MB) replayed with a chunk of 100: the Python heap's peak
    during the replay stays far below the DLQ's size (a chunk is 0.8 MB; the consumer's fetch
    buffers a few MB), and each dead letter lands on the target exactly once."""
    n, chunk = 3_000, 100
    dlq_topic, target = unique_name("replay-mem.dlq"), unique_name("replay-mem.target")
    await make_topics(kafka_bootstrap, (dlq_topic, 3), (target, 3))
    await produce_dead_letters(kafka_bootstrap, dlq_topic, target, n)
    monkeypatch.setattr(dlq, "REPLAY_BATCH", chunk)
    settings = Settings(bootstrap_servers=kafka_bootstrap)

    tracemalloc.start()
    try:
        result = await dlq.replay(settings, dlq_topic, group=unique_name("replay-mem"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert result.published == n and result.read == n, result
    peak_mb = peak / 2**20
    dlq_mb = n * PAD / 2**20
    assert peak_mb < 10, f"replay held {peak_mb:.1f} MB at its peak for a {dlq_mb:.0f} MB DLQ (chunk {chunk})"
    seen = await replay_ids(kafka_bootstrap, target)
    assert len(seen) == n and set(seen.values()) == {1}
