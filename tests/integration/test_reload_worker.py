"""Rule reload without restart on the real broker: a worker process under exactly_once whose
topology file changes mid-stream. Every output is counted by id against the input (0 lost, 0
duplicated) and its score checked against the rule of the version its so.version header names."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.topology_harness import (
    BOOTSTRAP,
    ISOLATED,
    WorkerProcess,
    free_port,
    headers_of,
    scrape,
    wait_for_group,
)

pytestmark = pytest.mark.integration

TOPOLOGY = """\
topology: reload_{s}
version: "{version}"
processing: exactly_once
topics:
  in.{s}: {{partitions: 3, key: id}}
  scored.{s}: {{partitions: 3, key: id}}
nodes:
  score:
    input: in.{s}
    batch_size: 50
    steps:{extra}
      - step: score
        as: score
        rules:
          - {{name: big, when: amount > 100, weight: {weight}}}
    routes:
      - to: scored.{s}
    errors:
      dlq: dlq.{s}
"""
ADDED_STEP = "\n      - {step: filter, when: amount > 0}"
SCORE = {"1": 0.4, "2": 0.7}  # the score of every record (amount 150) under each version


def write(path: Path, s: str, version: str, weight: float, extra: str = "") -> None:
    path.write_text(TOPOLOGY.format(s=s, version=version, weight=weight, extra=extra))


class Feed:
    """Produces records {id, amount: 150} with increasing ids, a few per 10 ms, until stopped."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.sent = 0
        self._stop = asyncio.Event()

    async def run(self, until: int | None = None) -> None:
        self._stop.clear()
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
        await producer.start()
        try:
            while not self._stop.is_set() and (until is None or self.sent < until):
                for _ in range(5):
                    value = orjson.dumps({"id": f"r{self.sent}", "amount": 150})
                    await producer.send(self.topic, value, key=f"k{self.sent % 7}".encode())
                    self.sent += 1
                await producer.flush()
                await asyncio.sleep(0.01)
        finally:
            await producer.stop()

    def stop(self) -> None:
        self._stop.set()


async def read_committed(topic: str, expected: int, timeout: float = 90.0) -> list[Any]:
    """Every committed record of ``topic``, once ``expected`` are there (and 2 s more for extras)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=None, isolation_level="read_committed")
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        records: list[Any] = []
        deadline, settled = time.monotonic() + timeout, None
        while time.monotonic() < deadline and (settled is None or time.monotonic() < settled):
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                records.extend(batch)
            if settled is None and len(records) >= expected:
                settled = time.monotonic() + 2
        return records
    finally:
        await consumer.stop()


async def status(worker: WorkerProcess) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(worker.url + "/status") as resp:
        return await resp.json()


async def wait_status(worker: WorkerProcess, check, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = await status(worker)
        if check(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"status never matched: {body}\n{worker.log()}")
        await asyncio.sleep(0.2)


def check_outputs(records: list[Any], sent: int, ran: list[str]) -> Counter[str]:
    """0 lost, 0 duplicated, and each record scored by the version it names; returns the
    versions' record counts. In each input partition, by offset, the versions follow each other
    as ``ran``: a batch boundary splits them, never a record of an older version after a newer one."""
    ids = Counter(orjson.loads(r.value)["id"] for r in records)
    assert sorted(ids) == sorted(f"r{i}" for i in range(sent)), "lost records"
    assert [i for i, n in ids.items() if n > 1] == [], "duplicated records"
    versions: Counter[str] = Counter()
    order: dict[str, list[str]] = {}  # input partition -> the versions its records ran on, in order
    by_input = sorted(
        records, key=lambda r: (headers_of(r)["so.src.partition"], int(headers_of(r)["so.src.offset"]))
    )
    for r in by_input:
        version = headers_of(r)["so.version"]
        assert orjson.loads(r.value)["score"] == SCORE[version[0]], (version, r.value)
        versions[version] += 1
        seq = order.setdefault(headers_of(r)["so.src.partition"], [])
        if not seq or seq[-1] != version:
            seq.append(version)
    for partition, seq in order.items():
        rest = iter(ran)
        assert all(v in rest for v in seq), f"partition {partition}: versions {seq}, ran {ran}"
    return versions


@pytest.fixture
def suffix() -> str:
    s = uuid.uuid4().hex[:8]
    ISOLATED.append(s)  # conftest deletes the topics holding it after the test
    return s


def worker_of(path: Path, tmp_path: Path, name: str) -> WorkerProcess:
    return WorkerProcess(
        path,
        tmp_path / f"{name}.log",
        env={"STREAM_ORCH_ADMIN_RELOAD": "true", "STREAM_ORCH_LOG_LEVEL": "INFO"},
        metrics_port=free_port(),
    )


async def test_a_weight_change_applies_at_a_batch_boundary_a_new_step_is_refused_and_rollback_works(
    tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / "reload.yaml"
    write(path, suffix, "1", 0.4)
    worker = worker_of(path, tmp_path, "worker").start()
    try:
        await wait_for_group(f"reload_{suffix}.score")
        assert (await status(worker))["version"] == "1"
        feed = Feed(f"in.{suffix}")
        feeding = asyncio.create_task(feed.run())
        while feed.sent < 500:
            await asyncio.sleep(0.05)

        # a weight changes mid-stream: applied at the next batch boundary
        write(path, suffix, "2", 0.7)
        worker.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        body = await wait_status(worker, lambda b: b["version"] == "2")
        assert body["last_reload"]["result"] == "applied" and body["last_reload"]["trigger"] == "SIGHUP"
        at_reload = feed.sent
        while feed.sent < at_reload + 500:
            await asyncio.sleep(0.05)

        # a step added: refused with one line, the worker keeps version 2 and keeps processing
        write(path, suffix, "3", 0.7, ADDED_STEP)
        worker.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        body = await wait_status(worker, lambda b: (b["last_reload"] or {}).get("result") == "refused")
        assert body["version"] == "2"
        assert "nodes.score.steps[0]: a step was added (needs a restart)" in body["last_reload"]["reason"]
        at_refusal = feed.sent
        while feed.sent < at_refusal + 500:
            await asyncio.sleep(0.05)
        feed.stop()
        await feeding

        records = await read_committed(f"scored.{suffix}", feed.sent)
        versions = check_outputs(records, feed.sent, ["1", "2"])
        # the records sent once the worker said it runs version 2 all ran on it, also after the refusal
        after = [r for r in records if int(orjson.loads(r.value)["id"][1:]) >= at_reload]
        assert len(after) >= 1000 and {headers_of(r)["so.version"] for r in after} == {"2"}
        assert versions["1"] > 0, versions
        refused = [line for line in worker.log().splitlines() if "reload refused" in line]
        assert len(refused) == 1 and "WARNING" in refused[0], refused

        # rollback to version 1 with the CLI: the kept copy, not the file (which says 3)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "stream_orch.cli.main",
                "reload",
                str(worker.proc.pid),
                "--to-version",
                "1",
            ],  # type: ignore[union-attr]
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ},
        )
        assert done.returncode == 0, done.stderr
        assert f"worker {worker.proc.pid} runs version 1" in done.stdout  # type: ignore[union-attr]
        assert (await status(worker))["version"] == "1"
        before = feed.sent
        await feed.run(until=before + 300)
        records = await read_committed(f"scored.{suffix}", feed.sent)
        check_outputs(records, feed.sent, ["1", "2", "1"])
        tail = [r for r in records if int(orjson.loads(r.value)["id"][1:]) >= before]
        assert {headers_of(r)["so.version"] for r in tail} == {"1"}

        samples = await scrape(worker.url)
        assert samples[("stream_orch_reloads_total", (("result", "applied"),))] == 2
        assert samples[("stream_orch_reloads_total", (("result", "refused"),))] == 1
        kept = sorted(p.name for p in (worker.state_dir / f"reload_{suffix}" / "versions").glob("*.yaml"))
        assert kept == ["1.yaml", "2.yaml"]
    finally:
        worker.stop()


async def post_reload(worker: WorkerProcess, query: str = "") -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.post(worker.url + "/admin/reload" + query) as resp:
        return resp.status, await resp.json()


async def test_a_reload_on_one_worker_is_taken_by_the_other_reading_the_same_file(
    tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / "reload.yaml"
    write(path, suffix, "1", 0.4)
    first = worker_of(path, tmp_path, "first").start()
    second = worker_of(path, tmp_path, "second").start()
    off = WorkerProcess(path, tmp_path / "off.log", metrics_port=free_port()).start()  # endpoint off
    try:
        await wait_for_group(f"reload_{suffix}.score")
        for worker in (first, second, off):
            await wait_status(worker, lambda b: b["version"] == "1")
        feed = Feed(f"in.{suffix}")
        feeding = asyncio.create_task(feed.run())
        while feed.sent < 300:
            await asyncio.sleep(0.05)

        write(path, suffix, "2", 0.7)
        code, body = await post_reload(first)  # the HTTP trigger, on one worker only
        assert (code, body["result"], body["version"]) == (200, "applied", "2"), body
        for worker in (second, off):  # the others hear the announcement and read their own file
            body = await wait_status(worker, lambda b: b["version"] == "2")
            assert (body["last_reload"]["result"], body["last_reload"]["trigger"]) == ("applied", "announced")
        at_reload = feed.sent
        while feed.sent < at_reload + 600:
            await asyncio.sleep(0.05)
        feed.stop()
        await feeding

        records = await read_committed(f"scored.{suffix}", feed.sent)
        check_outputs(records, feed.sent, ["1", "2"])
        after = [r for r in records if int(orjson.loads(r.value)["id"][1:]) >= at_reload]
        assert len(after) == feed.sent - at_reload
        assert {headers_of(r)["so.version"] for r in after} == {"2"}  # every worker runs version 2
        assert {headers_of(r)["so.node"] for r in after} == {"score"}

        code, body = await post_reload(off)
        assert code == 404 and "STREAM_ORCH_ADMIN_RELOAD" in body["error"]
        code, body = await post_reload(first, "?version=7")
        assert code == 409 and body["result"] == "refused" and "no kept version '7'" in body["reason"]
    finally:
        for worker in (first, second, off):
            worker.stop()
