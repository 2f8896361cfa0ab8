"""`dlq replay` streams the DLQ in bounded chunks on the real broker: what it holds in memory is
bounded by the chunk size, not by the DLQ's size, and every dead letter is published once
(counted by ``so.replay.id`` on the target, read_committed), also when a replay is killed with
SIGKILL part-way and run again (the row goes to .state/reliability-results.jsonl)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import tracemalloc
from collections import Counter

import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from kafka_helpers import run_cli, stream_orch_cmd, unique_name

from stream_orch.reliability import replay
from stream_orch.settings import Settings
from stream_orch.transport import clients
from stream_orch.transport.metadata import wait_for_metadata
from tests import reliability_harness as rh

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
        parts = (await wait_for_metadata(consumer, [topic], timeout_s=20))[topic]
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
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
    target = unique_name("replay-mem.target")
    dlq_topic = f"{target}.dlq"  # the default name: its dead letters may go back to target
    await make_topics(kafka_bootstrap, (dlq_topic, 3), (target, 3))
    await produce_dead_letters(kafka_bootstrap, dlq_topic, target, n)
    monkeypatch.setattr(replay, "REPLAY_BATCH", chunk)
    settings = Settings(bootstrap_servers=kafka_bootstrap)

    tracemalloc.start()
    try:
        result = await replay.replay(settings, dlq_topic, group=unique_name("replay-mem"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert result.published == n and result.read == n, result
    peak_mb = peak / 2**20
    dlq_mb = n * PAD / 2**20
    assert peak_mb < 10, f"replay held {peak_mb:.1f} MB at its peak for a {dlq_mb:.0f} MB DLQ (chunk {chunk})"
    seen = await replay_ids(kafka_bootstrap, target)
    assert len(seen) == n and set(seen.values()) == {1}


async def high_watermarks(bootstrap: str, topic: str, isolation: str = "read_uncommitted") -> int:
    consumer = clients.reader({"bootstrap_servers": bootstrap}, isolation_level=isolation)
    await consumer.start()
    try:
        parts = (await wait_for_metadata(consumer, [topic], timeout_s=20))[topic]
        end = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return sum(end.values())
    finally:
        await consumer.stop()


async def test_kill_9_mid_replay_then_replay_again_publishes_nothing_twice(kafka_bootstrap: str) -> None:
    """A real `stream-orch dlq replay` with a small chunk, killed with SIGKILL once a third of the
    DLQ is on the target; a second replay of the same ledger then publishes the rest: every dead
    letter is on the target exactly once as a read_committed consumer sees it (the killed run's
    open chunk was aborted by the second run's fencing and published again)."""
    n, chunk = 20_000, 100
    target = unique_name("replay-kill.target")
    dlq_topic = f"{target}.dlq"
    group = unique_name("replay-kill")
    await make_topics(kafka_bootstrap, (dlq_topic, 3), (target, 3))
    await produce_dead_letters(kafka_bootstrap, dlq_topic, target, n, pad=200)
    env = {**os.environ, "STREAM_ORCH_BOOTSTRAP_SERVERS": kafka_bootstrap}
    args = ["dlq", "replay", dlq_topic, "--group", group, "--chunk-size", str(chunk)]

    proc = await asyncio.create_subprocess_exec(
        *stream_orch_cmd(), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    written = 0
    while time.monotonic() < deadline and proc.returncode is None:
        written = await high_watermarks(kafka_bootstrap, target)
        if written >= n // 3:
            break
        await asyncio.sleep(0.02)
    assert proc.returncode is None, f"the replay ended before it could be killed: {await proc.communicate()}"
    proc.send_signal(signal.SIGKILL)
    await proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    before = await replay_ids(kafka_bootstrap, target)  # committed by the killed run
    assert 0 < len(before) < n, f"killed mid-way: {len(before)} of {n} committed"
    assert set(before.values()) == {1}

    started = time.monotonic()
    code, stdout, stderr = await run_cli(*args, env=env, timeout=120)
    second_s = time.monotonic() - started
    assert code == 0, stderr
    assert f"published {n - len(before)} " in stdout and f"{len(before)} already replayed" in stdout, stdout

    seen = await replay_ids(kafka_bootstrap, target)
    expected = {f"{dlq_topic}/{p}/{o}" for p, o in await _dlq_coordinates(kafka_bootstrap, dlq_topic)}
    lost = len(expected - set(seen))
    # read_uncommitted also returns the records of aborted transactions: the killed run's open chunk
    aborted = sum((await replay_ids(kafka_bootstrap, target, "read_uncommitted")).values()) - sum(
        seen.values()
    )
    duplicated = sum(c - 1 for c in seen.values())
    assert (lost, duplicated, len(seen)) == (0, 0, n)
    code, stdout, _ = await run_cli(*args, env=env)  # a third run: nothing left
    assert code == 0 and "published 0 " in stdout and f"{n} already replayed" in stdout, stdout
    rh.record_result(
        "dlq replay: kill -9 mid-replay (chunks of 100), replay again",
        events_in=n,
        committed_before_kill=len(before),
        aborted_at_kill=aborted,
        published_by_second_run=n - len(before),
        lost=lost,
        duplicated_outputs=duplicated,
        second_run_s=round(second_s, 1),
    )


async def _dlq_coordinates(bootstrap: str, topic: str) -> list[tuple[int, int]]:
    consumer = clients.reader({"bootstrap_servers": bootstrap})
    await consumer.start()
    try:
        parts = (await wait_for_metadata(consumer, [topic], timeout_s=20))[topic]
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        coords: list[tuple[int, int]] = []
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                coords += [(r.partition, r.offset) for r in records]
    finally:
        await consumer.stop()
    return coords
