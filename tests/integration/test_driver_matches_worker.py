"""The test driver's dead letters are the worker's: the same records into a real worker (real
broker) and into ``TopologyTestDriver`` give dead letters with the same partition, key, value,
timestamp and headers (reason, class, message, stack trace, coordinates), the failure times
aside (each has its own clock)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from stream_orch.reliability import headers as H
from stream_orch.testing import TopologyTestDriver
from stream_orch.testing.records import OutputRecord
from tests import reliability_harness as rh
from tests.topology_harness import headers_of, wait_for_group

pytestmark = pytest.mark.integration

DOC = {
    "topology": "driver_matches_worker",
    "version": "1",
    "python_packages": ["tests.integration.slow_steps"],
    "topics": {"events": {"partitions": 3, "key": "id"}, "out": {"partitions": 3, "key": "id"}},
    "nodes": {
        "work": {
            "input": "events",
            "steps": [{"step": "python", "function": "tests.integration.slow_steps:flaky"}],
            "routes": [{"to": "out"}],
            "errors": {"dlq": "events.dlq"},
        }
    },
}
CLOCKS = {H.ERROR_FIRST_FAILURE, H.ERROR_LAST_FAILURE}


def _driver_dead_letters(path: Path, topic: str, records: list, ts: int) -> dict[bytes | None, OutputRecord]:
    with TopologyTestDriver(path, schemas=rh.REPO / "schemas", start_ms=ts, dlq_tracebacks=True) as d:
        for key, value in records:
            d.pipe(topic, value, key=key, timestamp=ts)
        return {r.raw_key: r for r in d.dead_letters()}


async def test_driver_dead_letters_equal_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, t, group = rh.topology_copy(tmp_path, DOC)
    (tmp_path / "broken").write_text("the downstream service is down")  # flaky raises
    monkeypatch.setenv("SO_TEST_FAULT_DIR", str(tmp_path))  # for the driver's flaky too
    ts = int(time.time() * 1000) - 1000
    records = [
        (b"down", orjson.dumps({"id": "down", "broken": True})),  # python_error: TransientError
        (b"cut", b'{"id": "cut", '),  # malformed_json
    ]
    w = rh.worker(path, tmp_path / "worker.log")
    w.env["STREAM_ORCH_DLQ_TRACEBACKS"] = "true"
    try:
        w.start()
        await wait_for_group(group)
        producer = AIOKafkaProducer(bootstrap_servers=rh.bootstrap(), acks="all")
        await producer.start()
        try:
            for key, value in records:
                await producer.send_and_wait(t["events"], value, key=key, timestamp_ms=ts)
        finally:
            await producer.stop()
        async with rh.Watcher([t["events.dlq"]]) as watch:
            assert await watch.wait(lambda x: x.count(t["events.dlq"]) >= 2, timeout=30), w.log()
        worker = {r.key: r for r in watch.records[t["events.dlq"]]}
        assert w.terminate() == 0
    finally:
        w.stop()
        await rh.delete_topics(list(t.values()))
    # as a test uses the driver: from plain code, no event loop running in its thread
    driver = await asyncio.to_thread(_driver_dead_letters, path, t["events"], records, ts)
    assert sorted(driver) == sorted(worker) == [b"cut", b"down"]
    for key, theirs in worker.items():
        ours = driver[key]
        assert (ours.partition, ours.raw_value, ours.timestamp) == (theirs.partition, theirs.value, ts)
        wh = {k: v for k, v in headers_of(theirs).items() if k not in CLOCKS}
        assert {k: v for k, v in ours.headers.items() if k not in CLOCKS} == wh
    trace = headers_of(worker[b"down"])[H.ERROR_STACKTRACE]
    assert "slow_steps.py" in trace and "no running event loop" not in trace
