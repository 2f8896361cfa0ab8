"""A node reads its input through transport/fetched.py: committed records only, each once, with
aborted transactions of two producers interleaved with committed ones and plain records, the
markers' offsets in between (gaps), and batches of 2 taken from fetched record batches of up
to 3 records; the group's offset ends past the last marker. Real broker, real worker process."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests import reliability_harness as rh
from tests.topology_harness import wait_for_group

pytestmark = pytest.mark.integration

DOC = {
    "topology": "fetched_txn",
    "version": "1",
    "topics": {"events": {"partitions": 1, "key": "id"}, "out": {"partitions": 1, "key": "id"}},
    "nodes": {
        "work": {
            "input": "events",
            "batch_size": 2,
            "steps": [{"step": "derive", "fields": {"seen": "True"}}],
            "routes": [{"to": "out"}],
            "errors": {"dlq": "events.dlq"},
        }
    },
}


async def _send(producer: AIOKafkaProducer, topic: str, *ids: str) -> None:
    batch = producer.create_batch()
    for id_ in ids:
        assert batch.append(key=id_.encode(), value=orjson.dumps({"id": id_}), timestamp=None) is not None
    await (await producer.send_batch(batch, topic, partition=0))


async def test_a_node_reads_committed_records_once_past_aborted_transactions(tmp_path: Path) -> None:
    path, t, group = rh.topology_copy(tmp_path, DOC)
    events, out = t["events"], t["out"]
    w = rh.worker(path, tmp_path / "worker.log")
    server = rh.bootstrap()
    one = AIOKafkaProducer(bootstrap_servers=server, transactional_id=f"i25fetch-{group}-1")
    two = AIOKafkaProducer(bootstrap_servers=server, transactional_id=f"i25fetch-{group}-2")
    plain = AIOKafkaProducer(bootstrap_servers=server, acks="all")
    try:
        w.start()
        await wait_for_group(group)  # the worker creates the topics
        for p in (one, two, plain):
            await p.start()
        try:
            await one.begin_transaction()
            await _send(one, events, "c1", "c2", "c3")
            await one.commit_transaction()
            await one.begin_transaction()
            await _send(one, events, "a1", "a2")
            await one.abort_transaction()
            await _send(plain, events, "n1")
            await two.begin_transaction()
            await _send(two, events, "x1", "x2", "x3")
            await one.begin_transaction()
            await _send(one, events, "c4")
            await _send(two, events, "x4")
            await one.commit_transaction()
            await two.abort_transaction()
            await _send(plain, events, "n2", "n3")
            await one.begin_transaction()
            await _send(one, events, "c5", "c6")
            await one.commit_transaction()
        finally:
            for p in (one, two, plain):
                await p.stop()
        async with rh.Watcher([out]) as watch:
            assert await watch.wait(lambda x: x.count(out) >= 9, timeout=30, settle=2), w.log()
        outputs = [orjson.loads(r.value)["id"] for r in watch.records[out]]
        assert outputs == ["c1", "c2", "c3", "n1", "c4", "n2", "n3", "c5", "c6"], w.log()
        tp = TopicPartition(events, 0)
        reader = AIOKafkaConsumer(bootstrap_servers=server)
        await reader.start()
        try:
            end = (await reader.end_offsets([tp]))[tp]
        finally:
            await reader.stop()
        assert end == 20  # 15 records and 5 markers
        admin = AIOKafkaAdminClient(bootstrap_servers=server)
        await admin.start()
        try:
            committed = await admin.list_consumer_group_offsets(group)
        finally:
            await admin.close()
        assert committed[tp].offset == end, committed
        assert w.terminate() == 0
    finally:
        w.stop()
        await rh.delete_topics(list(t.values()))
