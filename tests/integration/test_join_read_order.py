"""A join node reads its input and the join's topic in event-time order (issue 25), on the real
broker.

Payments and settlements (2 partitions each, co-partitioned), 1,500 a partition one second of
event time apart (the record timestamps), each settlement 20 s after its payment, and one closing
pair per partition at the same time on both topics. Everything is written before the worker
starts, payments first: one fetch response holds a whole partition of either topic, so a worker
that reads as fetched hands one side to its batches 25 minutes of event time ahead of the other.
In order, what reaches the batches has settlements at most the join's window (after 5 min + grace
1 min) plus ``join_read_lead_ms`` (2 s here) ahead of the payments, and payments at most the lead
ahead of the settlements less the window, read from the worker's /metrics; every payment is
matched. Then a node whose
joined topic is empty still reads its whole input (under exactly_once): a side with nothing to
read holds nothing back. The tests delete their topics.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from ruamel.yaml import YAML

from tests import reliability_harness as rh
from tests import topology_harness as th
from tests.integration.test_join_bounds import keys_per_partition
from tests.integration.test_windows_aggregate import delete_topics

pytestmark = pytest.mark.integration

PARTITIONS = 2
PER_PARTITION = 1_500
T0 = 1_700_000_000_000
LEAD_MS = 2_000
WINDOW_S = 360  # the join's after + grace: how far settlements are read ahead by design


def topology(tmp_path: Path, suffix: str, processing: str) -> tuple[Path, dict[str, str], str]:
    name = f"readorder_{suffix}"
    t = {n: f"{n}.{suffix}" for n in ("payments", "settlements", "matched", "unmatched", "dlq")}
    doc: dict[str, Any] = {
        "topology": name,
        "processing": processing,
        "topics": {topic: {"partitions": PARTITIONS, "key": "id"} for topic in t.values()},
        "tables": {"waiting": {}},
        "nodes": {
            "reconcile": {
                "input": t["payments"],
                "batch_size": 200,
                "steps": [
                    {
                        "step": "join",
                        "topic": t["settlements"],
                        "table": "waiting",
                        "key": "id",
                        "before": "1m",
                        "after": "5m",
                        "how": "left",
                        "grace": "1m",
                        "fields": ["ts"],
                        "prefix": "s_",
                    }
                ],
                "routes": [
                    {"when": "join_status == 'unmatched'", "to": t["unmatched"]},
                    {"otherwise": True, "to": t["matched"]},
                ],
                "errors": {"dlq": t["dlq"]},
            }
        },
    }
    path = tmp_path / "readorder.yaml"
    with path.open("w") as fh:
        YAML().dump(doc, fh)
    return path, t, name


async def create(topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=th.BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics])
    finally:
        await admin.close()


async def produce(topic: str, records: list[tuple[str, int]], offset_ms: int = 0) -> None:
    """(key, event time) records, the event time as the record's timestamp and its ``ts``."""
    producer = AIOKafkaProducer(bootstrap_servers=th.BOOTSTRAP, acks="all", linger_ms=20)
    await producer.start()
    try:
        sent = []
        for key, ts in records:
            value = orjson.dumps({"id": key, "ts": ts + offset_ms, "pad": "x" * 80})
            sent.append(
                await producer.send(topic, value=value, key=key.encode(), timestamp_ms=ts + offset_ms)
            )
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def read_to_end(group: str, topics: list[str], timeout: float) -> bool:
    """Wait until ``group`` has committed every partition of ``topics`` up to its end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=th.BOOTSTRAP, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            committed = {tp: await consumer.committed(tp) or 0 for tp in tps}
            if all(committed[tp] >= ends[tp] for tp in tps):
                return True
            await asyncio.sleep(0.5)
        return False
    finally:
        await consumer.stop()


def keyed(suffix: str) -> list[list[str]]:
    """Per partition, ``PER_PARTITION`` distinct keys that land on it."""
    from stream_orch.runtime.output import murmur2

    keys: list[list[str]] = [[] for _ in range(PARTITIONS)]
    i = 0
    while min(map(len, keys)) < PER_PARTITION:
        key = f"{suffix}-{i}"
        part = keys[(murmur2(key.encode()) & 0x7FFFFFFF) % PARTITIONS]
        if len(part) < PER_PARTITION:
            part.append(key)
        i += 1
    return keys


async def test_both_sides_reach_the_batches_within_the_lead(tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    path, t, name = topology(tmp_path, suffix, "at_least_once")
    keys = keyed(suffix)
    rows = [(k, T0 + i * 1000) for part in keys for i, k in enumerate(part)]
    close = T0 + PER_PARTITION * 1000 + 600_000  # past every bound, on both topics
    closing = [(k, close) for k in keys_per_partition(f"Z{suffix}")[:PARTITIONS]]
    try:
        await create([t["payments"], t["settlements"]])
        await produce(t["payments"], rows + closing)
        await produce(t["settlements"], rows, offset_ms=20_000)
        await produce(t["settlements"], closing)
        port = th.free_port()
        w = th.WorkerProcess(
            path,
            tmp_path / "worker.log",
            env={"PYTHONPATH": str(rh.REPO), "STREAM_ORCH_JOIN_READ_LEAD_MS": str(LEAD_MS)},
            metrics_port=port,
        )
        w.start()
        try:
            assert await read_to_end(f"{name}.reconcile", [t["payments"], t["settlements"]], 120), w.log()
            samples = await th.scrape(w.url)
            node = ("node", "reconcile")
            lead_max = {
                topic: samples[("stream_orch_join_read_lead_max_seconds", (node, ("topic", t[topic])))]
                for topic in ("payments", "settlements")
            }
            # the closing pair is 10 minutes after the last records: read in order, it waited
            assert lead_max["payments"] <= LEAD_MS / 1000, lead_max
            assert lead_max["settlements"] <= WINDOW_S + LEAD_MS / 1000, lead_max
            held = samples[("stream_orch_join_read_held_seconds_total", (node, ("topic", t["payments"])))]
            assert held > 0  # payments were written first and waited for the settlements
            assert w.terminate() == 0
        finally:
            w.stop()
        async with rh.Watcher([t["matched"], t["unmatched"]]) as watch:
            done = await watch.wait(lambda x: x.count(t["matched"]) >= len(rows), timeout=30, settle=1.0)
            assert done, (watch.count(t["matched"]), watch.count(t["unmatched"]))
            assert watch.count(t["unmatched"]) == 0
    finally:
        await delete_topics(suffix)


async def test_an_empty_joined_topic_holds_nothing_back(tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    path, t, name = topology(tmp_path, suffix, "exactly_once")
    rows = [(k, T0 + i * 1000) for part in keyed(suffix) for i, k in enumerate(part)]
    try:
        await create([t["payments"], t["settlements"]])
        await produce(t["payments"], rows)
        w = th.WorkerProcess(
            path, tmp_path / "worker.log", env={"PYTHONPATH": str(rh.REPO)}, metrics_port=th.free_port()
        )
        w.start()
        try:
            assert await read_to_end(f"{name}.reconcile", [t["payments"]], 120), w.log()
            assert w.terminate() == 0
        finally:
            w.stop()
    finally:
        await delete_topics(suffix)
