"""Lag against the real broker, with Kafka's own ``ConsumerGroupCommand --describe`` as the reference."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata

from stream_orch.observability.http import serve
from stream_orch.observability.lag import LagCollector, LagReader
from stream_orch.observability.metrics import Metrics
from stream_orch.observability.status import Status, StatusEvaluator
from stream_orch.settings import Settings
from tests.kafka_tool import describe, kafka_jars_fixture  # noqa: F401 - the kafka_jars fixture
from tests.topology_harness import scrape

pytestmark = pytest.mark.integration

BOOTSTRAP = Settings().bootstrap_servers
N = 100  # records per partition
STEP_MS = 100  # record i of a partition has timestamp BASE + i * STEP_MS


@pytest.fixture
async def topic() -> str:
    name = f"lagtest-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    return name


async def produce(topic: str, base_ms: int, start: int, count: int) -> None:
    """``count`` records into each of the two partitions; record i gets timestamp base + i * STEP_MS."""
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, f"v{i}".encode(), partition=p, timestamp_ms=base_ms + i * STEP_MS)
            for p in (0, 1)
            for i in range(start, start + count)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def consume_and_commit(topic: str, group: str, upto: dict[int, int]) -> None:
    """A plain aiokafka group member that reads everything it can and commits exactly ``upto``."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=BOOTSTRAP,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        seen: set[int] = set()
        deadline = time.monotonic() + 30
        while seen != set(upto) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            seen.update(tp.partition for tp, recs in batch.items() if recs)
        await consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "") for p, o in upto.items()})
    finally:
        await consumer.stop()


async def commit_only(topic: str, group: str, upto: dict[int, int]) -> None:
    """Commits offsets for a group with no active members (a consumer that keeps committing one offset)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in upto]
        consumer.assign(tps)
        await consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "") for p, o in upto.items()})
    finally:
        await consumer.stop()


async def test_lag_matches_kafka_consumer_groups_tool_and_seconds_are_exact(
    topic: str, kafka_jars: Path
) -> None:
    group = f"{topic}-g"
    base_ms = int(time.time() * 1000) - 120_000  # records written "two minutes ago" and later
    await produce(topic, base_ms, 0, N)
    await consume_and_commit(topic, group, {0: 30, 1: 70})

    metrics = Metrics()
    async with LagReader(Settings(bootstrap_servers=BOOTSTRAP)) as reader:
        assert group in await reader.groups()  # found by listing, like any group of the cluster
        collector = LagCollector(reader, metrics, groups=[group])
        server = await serve(metrics, None, "127.0.0.1", 0)
        try:
            now = time.time()
            rows = await collector.poll_once(now)
            reference = await asyncio.to_thread(describe, kafka_jars, group)
            ours = {(r.topic, r.partition): (r.committed, r.end, r.lag_records) for r in rows}
            assert ours == reference == {(topic, 0): (30, N, 70), (topic, 1): (70, N, 30)}

            # seconds: now - timestamp of the first unconsumed record (the one AT the committed offset)
            by_p = {r.partition: r for r in rows}
            assert by_p[0].lag_seconds == pytest.approx(now - (base_ms + 30 * STEP_MS) / 1000, abs=0.01)
            assert by_p[1].lag_seconds == pytest.approx(now - (base_ms + 70 * STEP_MS) / 1000, abs=0.01)
            assert by_p[0].lag_seconds > by_p[1].lag_seconds > 100

            # the exporter endpoint says the same as the tool
            scraped = await scrape(server.url)
            for (t, p), (_, _, lag) in reference.items():
                key = (("group", group), ("partition", str(p)), ("topic", t))
                assert scraped[("stream_orch_consumer_lag_records", key)] == lag
                assert scraped[("stream_orch_consumer_lag_seconds", key)] == pytest.approx(
                    by_p[p].lag_seconds
                )

            # timestamps are cached: a second poll at the same offsets fetches no record
            fetched = reader._ts_cache.copy()
            rows2 = await collector.poll_once(now + 5)
            assert reader._ts_cache == fetched
            assert {r.partition: r.lag_seconds for r in rows2}[0] == pytest.approx(
                by_p[0].lag_seconds + 5, abs=0.01
            )

            # caught up: lag 0 records and 0 seconds, status ok
            await consume_and_commit(topic, group, {0: N, 1: N})
            rows = await collector.poll_once()
            assert [(r.lag_records, r.lag_seconds, r.status) for r in rows] == [(0, 0.0, Status.OK)] * 2
            assert await asyncio.to_thread(describe, kafka_jars, group) == {
                (topic, 0): (N, N, 0),
                (topic, 1): (N, N, 0),
            }
        finally:
            await server.stop()


async def test_stopped_consumer_shows_stop_and_rising_lag_seconds(topic: str) -> None:
    group = f"{topic}-stop"
    base_ms = int(time.time() * 1000) - 30_000
    await produce(topic, base_ms, 0, N)
    evaluator = StatusEvaluator(window=5, min_stop_seconds=2.0)
    async with LagReader(Settings(bootstrap_servers=BOOTSTRAP)) as reader:
        collector = LagCollector(reader, groups=[group], evaluator=evaluator)
        # a consumer making progress: two commits seen by the poller, lag shrinking
        await commit_only(topic, group, {0: 10, 1: 10})
        await collector.poll_once()
        await commit_only(topic, group, {0: 50, 1: 60})
        first = await collector.poll_once()
        assert {r.status for r in first} == {Status.OK}
        assert collector.group_status[group] is Status.OK
        # then it stops committing while records keep arriving
        await produce(topic, int(time.time() * 1000), N, 20)
        await asyncio.sleep(2.5)
        later = await collector.poll_once()
        assert {r.status for r in later} == {Status.STOP}
        assert collector.group_status[group] is Status.STOP
        for before, after in zip(first, later, strict=True):
            assert after.lag_records == before.lag_records + 20
            assert after.lag_seconds >= before.lag_seconds + 2.5  # same oldest record, later now
        # it resumes and catches up
        await commit_only(topic, group, {0: N + 20, 1: N + 20})
        done = await collector.poll_once()
        assert [(r.lag_records, r.lag_seconds, r.status) for r in done] == [(0, 0.0, Status.OK)] * 2


async def test_consumer_committing_same_offset_with_lag_is_stalled(topic: str) -> None:
    """Real commits of one offset reported by the worker (record_commit) while lag stays > 0 -> STALL."""
    group = f"{topic}-stall"
    await produce(topic, int(time.time() * 1000) - 10_000, 0, N)
    evaluator = StatusEvaluator(window=4, min_stop_seconds=30.0)
    async with LagReader(Settings(bootstrap_servers=BOOTSTRAP)) as reader:
        collector = LagCollector(reader, groups=[group], evaluator=evaluator)
        tps = [TopicPartition(topic, p) for p in (0, 1)]
        for i in range(4):
            await commit_only(topic, group, {0: 40, 1: 40})
            ends = await reader.end_offsets(tps)
            collector.record_commit(group, {tp: 40 for tp in tps}, ends)
            if i == 1:  # records keep arriving while it is stuck
                await produce(topic, int(time.time() * 1000), N, 5)
            await asyncio.sleep(0.05)
        rows = await collector.poll_once()
        assert {r.status for r in rows} == {Status.STALL}
        assert collector.group_status[group] is Status.STALL
        assert all(r.lag_records == N + 5 - 40 for r in rows)
        # a rewind (reset of offsets backwards) is reported as such
        await commit_only(topic, group, {0: 10, 1: 10})
        collector.record_commit(group, {tp: 10 for tp in tps}, await reader.end_offsets(tps))
        rows = await collector.poll_once()
        assert {r.status for r in rows} == {Status.REWIND}


def test_lag_cli_prints_table_and_rejects_bad_input(topic: str) -> None:
    group = f"{topic}-cli"
    asyncio.run(_prepare_cli(topic, group))
    cmd = [sys.executable, "-m", "stream_orch.cli.main", "--bootstrap-servers", BOOTSTRAP, "lag"]
    ok = subprocess.run([*cmd, "--group", group], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.splitlines()
    assert lines[0].split() == ["GROUP", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "LAG(s)", "STATUS"]
    cells = [ln.split() for ln in lines[1:]]
    assert [c[:6] for c in cells] == [
        [group, topic, "0", "25", str(N), "75"],
        [group, topic, "1", "25", str(N), "75"],
    ]
    assert all(float(c[6]) > 0 and c[7] == "-" for c in cells)  # one observation: no status yet
    bad = subprocess.run([*cmd, "--group", "no-such-group-xyz"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 3
    assert bad.stderr.strip().splitlines() == [
        "stream-orch: error: no such consumer group: no-such-group-xyz"
    ]


async def _prepare_cli(topic: str, group: str) -> None:
    await produce(topic, int(time.time() * 1000) - 5_000, 0, N)
    await commit_only(topic, group, {0: 25, 1: 25})
