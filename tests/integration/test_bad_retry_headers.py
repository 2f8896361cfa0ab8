"""Retry records whose ``so.*`` headers are not the engine's (anyone who can write to a retry topic
can set them) go to the DLQ with ``bad_header: <name>`` and their bytes, and the records after
them on the same partition are processed: no node restart, no loop, no stall. Real broker, real
worker process."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from stream_orch.reliability import headers as H
from tests import reliability_harness as rh
from tests.topology_harness import free_port, headers_of, scrape, wait_for_group

pytestmark = pytest.mark.integration

DOC = {
    "topology": "bad_retry_headers",
    "version": "1",
    "topics": {"events": {"partitions": 3, "key": "id"}, "out": {"partitions": 3, "key": "id"}},
    "nodes": {
        "work": {
            "input": "events",
            "steps": [{"step": "derive", "fields": {"seen": "True"}}],
            "routes": [{"to": "out"}],
            "errors": {"retry": {"delays": ["300ms"]}, "dlq": "events.dlq"},
        }
    },
}


async def test_bad_retry_headers_are_dead_lettered_and_the_partition_goes_on(tmp_path: Path) -> None:
    path, t, group = rh.topology_copy(tmp_path, DOC)
    retry, out, dlq = f"{t['events']}.retry.1", t["out"], t["events.dlq"]
    port = free_port()
    w = rh.worker(path, tmp_path / "worker.log", metrics_port=port)
    now = int(time.time() * 1000)
    honest = {
        H.ERROR_TOPIC: t["events"].encode(),
        H.ERROR_PARTITION: b"0",
        H.ERROR_OFFSET: b"7",
        H.ERROR_TIMESTAMP: str(now - 1000).encode(),
        H.ERROR_FIRST_FAILURE: str(now - 1000).encode(),
        H.RETRY_ATTEMPT: b"1",
        H.RETRY_DUE: str(now).encode(),
    }
    # in this order on partition 0 of the retry tier: each bad record sits before good ones
    records = [
        ("bad-partition", {H.ERROR_PARTITION: b"abc"}),
        ("good-1", {}),
        ("bad-offset", {H.ERROR_OFFSET: b"x1"}),
        ("good-2", {H.RETRY_DUE: b"99999999999999"}),  # no tier waits that long: due at once
        ("bad-due", {H.RETRY_DUE: b"9" * 400}),  # this overflowed the worker's pause timer
        ("bad-timestamp", {H.ERROR_TIMESTAMP: str(now + 7_200_000).encode()}),  # the broker would refuse it
        ("bad-first-failure", {H.ERROR_FIRST_FAILURE: b"\xff"}),
        ("good-3", {}),
    ]
    try:
        w.start()
        await wait_for_group(group)
        producer = AIOKafkaProducer(bootstrap_servers=rh.bootstrap(), acks="all")
        await producer.start()
        try:
            for id_, changed in records:
                headers = list({**honest, **changed}.items())
                value = orjson.dumps({"id": id_})
                await producer.send_and_wait(
                    retry, value, key=id_.encode(), partition=0, headers=headers, timestamp_ms=now
                )
        finally:
            await producer.stop()
        async with rh.Watcher([out, dlq]) as watch:
            assert await watch.wait(
                lambda x: x.count(out) >= 3 and x.count(dlq) >= 5, timeout=30, settle=2
            ), w.log()
        outputs = sorted(orjson.loads(r.value)["id"] for r in watch.records[out])
        assert outputs == ["good-1", "good-2", "good-3"]  # nothing lost, nothing twice
        dead = {orjson.loads(r.value)["id"]: r for r in watch.records[dlq]}
        assert {k: headers_of(r)["so.error.reason"] for k, r in dead.items()} == {
            "bad-partition": "bad_header: so.error.partition",
            "bad-offset": "bad_header: so.error.offset",
            "bad-timestamp": "bad_header: so.error.timestamp",
            "bad-first-failure": "bad_header: so.error.first_failure",
            "bad-due": "bad_header: so.retry.due",
        }
        for id_, record in dead.items():
            assert record.value == orjson.dumps({"id": id_}) and record.key == id_.encode()  # its bytes
            assert headers_of(record)["so.error.topic"] == retry  # where the forged record is
        samples = await scrape(w.url)
        restarts = sum(v for (name, _), v in samples.items() if name == "stream_orch_node_restarts_total")
        assert restarts == 0, w.log()
        assert "node failed" not in w.log()
        assert w.terminate() == 0
    finally:
        w.stop()
        await rh.delete_topics([*t.values(), retry])
