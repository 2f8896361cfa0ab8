"""The audit trail on the real broker: every audited action appears once on the audit topic,
`stream-orch audit --since` prints it, and no record's key or value ever reaches the topic.

Each test writes to an audit topic of its own (STREAM_ORCH_AUDIT_TOPIC / Settings.audit_topic)
and deletes it afterwards."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import pytest_asyncio
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaTimeoutError
from kafka_helpers import run_cli, unique_name

from stream_orch.audit.events import AuditEvent, AuditSubject
from stream_orch.audit.read import read_events
from stream_orch.codecs import SchemaRegistry
from stream_orch.runtime import delivery, transactions
from stream_orch.runtime.output import hand_over
from stream_orch.runtime.worker import Worker
from stream_orch.settings import Settings
from stream_orch.topology.loader import load_topology
from stream_orch.transport import clients
from tests import reliability_harness as rh
from tests import topology_harness as th
from tests.integration.test_dlq_replay_chunks import make_topics, replay_ids

pytestmark = pytest.mark.integration


async def _delete(*topics: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=th.BOOTSTRAP)
    await admin.start()
    try:
        await admin.delete_topics(list(topics))
    except Exception:  # a topic the test never got to create
        pass
    finally:
        await admin.close()


@pytest_asyncio.fixture
async def audit_topic() -> AsyncIterator[str]:
    topic = unique_name("audit")
    yield topic
    await _delete(topic)


async def raw_audit_records(topic: str) -> list[bytes]:
    """Every key and value on the audit topic, as bytes (what a reader of the topic can see)."""
    consumer = clients.reader({"bootstrap_servers": th.BOOTSTRAP})
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        found: list[bytes] = []
        deadline = asyncio.get_running_loop().time() + 30
        while len(found) < 2 * end and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(tp, timeout_ms=1000)).values():
                for r in records:
                    found += [r.key or b"", r.value or b""]
        return found
    finally:
        await consumer.stop()


def _marked(profiles: list, txns: list, marker: str) -> tuple[list, list]:
    """The crafted records with ``marker`` in every key and in a string field of every value."""
    profiles = [
        (k + marker.encode(), orjson.dumps({**orjson.loads(v), "name": f"{marker} name"}))
        for k, v in profiles
    ]
    txns = [(k + marker.encode(), orjson.dumps({**orjson.loads(v), "merchant_id": marker})) for k, v in txns]
    return profiles, txns


async def test_a_worker_start_and_sigterm_stop_are_audited_once(tmp_path: Path, audit_topic: str) -> None:
    path, _t, group = rh.fraud_copy(tmp_path)
    spec = load_topology(path).spec
    expected = AuditSubject.of_topology(spec, path, th.REPO / "schemas")
    worker = th.WorkerProcess(
        path,
        tmp_path / "worker.log",
        env={"STREAM_ORCH_AUDIT_TOPIC": audit_topic, "STREAM_ORCH_AUDIT_USER": "ci-bot"},
    ).start()
    try:
        await th.wait_for_group(group)
        await asyncio.sleep(1)
        assert worker.terminate() == 0, worker.log()
    finally:
        worker.stop()

    env = {
        **os.environ,
        "STREAM_ORCH_BOOTSTRAP_SERVERS": th.BOOTSTRAP,
        "STREAM_ORCH_AUDIT_TOPIC": audit_topic,
    }
    code, out, err = await run_cli("audit", "--since", "10m", "--format", "json", env=env)
    assert code == 0, err
    events = [AuditEvent.from_json(line.encode()) for line in out.splitlines()]
    assert [e.action for e in events] == ["worker_start", "worker_stop"], out
    for event in events:
        assert (event.topology, event.version, event.content_hash) == (
            expected.topology,
            expected.version,
            expected.content_hash,
        )
        assert event.content_hash is not None and len(event.content_hash) == 16
        assert event.user == "ci-bot" and event.pid == worker.proc.pid  # type: ignore[union-attr]
    assert events[0].details["nodes"] == list(spec.nodes)
    assert events[1].details["reason"] == "stop requested"

    code, table, err = await run_cli("audit", "--since", "10m", "--topology", spec.topology, env=env)
    assert code == 0, err
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["time", "action", "topology"]
    assert [line.split()[2] for line in lines[1:]] == ["worker_start", "worker_stop"]  # date, time, action
    assert all(f"{spec.topology}  " in line and expected.content_hash in line for line in lines[1:])
    code, none, err = await run_cli("audit", "--topology", "another", env=env)
    assert (code, none.splitlines()[1:]) == (0, []), err


async def test_a_node_restart_is_audited_once_and_no_record_reaches_the_topic(
    tmp_path: Path, audit_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch whose produce fails once (a fault put into our own sender, as in
    test_node_restart) makes its node start over: one node_restart event; the records' marker is
    nowhere on the audit topic."""
    path, t, group = rh.fraud_copy(tmp_path)
    spec = load_topology(path).spec
    settings = Settings(bootstrap_servers=th.BOOTSTRAP, audit_topic=audit_topic, metrics_port=0)
    worker = Worker(spec, settings, SchemaRegistry(th.REPO / "schemas"))
    marker = f"MARK{uuid.uuid4().hex}"
    profiles, txns = _marked(*rh.crafted(20, 5)[:2], marker)
    enriched, dlq = t["transactions.enriched"], t["transactions.dlq"]
    failed: list[int] = []

    async def fail_once(producer, pending):  # the broker did not take this batch
        if not failed:
            failed.append(len(pending))
            raise KafkaTimeoutError("injected: batch not acknowledged")
        return await hand_over(producer, pending)

    await worker.start()
    try:
        await th.wait_for_group(group)
        await rh.produce_bulk(t["customers"], profiles)
        await asyncio.sleep(2)
        for module in (delivery, transactions):
            monkeypatch.setattr(module, "hand_over", fail_once)
        await rh.produce_bulk(t["transactions"], txns)
        async with rh.Watcher([enriched, dlq]) as watch:
            assert await watch.wait(lambda x: x.count(enriched) + x.count(dlq) >= len(txns) * 0.9, timeout=90)
    finally:
        await worker.shutdown()
    assert failed, "the fault was never hit"

    found = await read_events(settings, since_ms=None)
    restarts = [e for e in found.events if e.action == "node_restart"]
    assert len(restarts) == 1, found.events
    assert restarts[0].topology == spec.topology and restarts[0].version == spec.version
    assert restarts[0].details == {"node": "score_transactions", "restarts": 1, "error": "KafkaTimeoutError"}
    assert worker.metrics.audit_write_failures._value.get() == 0  # type: ignore[attr-defined]
    raw = await raw_audit_records(audit_topic)
    assert raw and not any(marker.encode() in b for b in raw)


async def test_a_dlq_replay_is_audited_once_with_count_target_and_ledger(audit_topic: str) -> None:
    source = unique_name("audit-replay.in")
    dlq, group = f"{source}.dlq", unique_name("audit-replay")
    marker = f"MARK{uuid.uuid4().hex}"
    await make_topics(th.BOOTSTRAP, (source, 1), (dlq, 1))
    try:
        headers = [("so.error.reason", b"unknown_customer"), ("so.error.topic", source.encode())]
        records = [(f"{marker}-k{i}".encode(), orjson.dumps({"id": i, "note": marker})) for i in range(7)]
        producer = clients.producer({"bootstrap_servers": th.BOOTSTRAP})
        await producer.start()
        try:
            for i, (key, value) in enumerate(records):
                await producer.send_and_wait(
                    dlq, value, key=key, headers=[*headers, ("so.error.offset", b"%d" % i)]
                )
        finally:
            await producer.stop()
        env = {
            **os.environ,
            "STREAM_ORCH_BOOTSTRAP_SERVERS": th.BOOTSTRAP,
            "STREAM_ORCH_AUDIT_TOPIC": audit_topic,
        }
        filter_expr = "offset >= 2"

        code, out, err = await run_cli(
            "dlq", "replay", dlq, "--group", group, "--filter", filter_expr, env=env
        )
        assert code == 0, err
        assert sum((await replay_ids(th.BOOTSTRAP, source)).values()) == 5

        code, out, err = await run_cli(
            "audit", "--since", "5m", "--action", "dlq_replay", "--format", "json", env=env
        )
        assert code == 0, err
        events = [AuditEvent.from_json(line.encode()) for line in out.splitlines()]
        assert len(events) == 1, out
        details = events[0].details
        assert details["count"] == 5 and details["targets"] == {source: 5}
        assert details["ledger"] == f"stream-orch-replay.{group}" and details["filter"] == filter_expr
        assert (details["dlq"], details["outcome"]) == (dlq, "done")
        raw = await raw_audit_records(audit_topic)
        assert raw and not any(marker.encode() in b for b in raw)
    finally:
        await _delete(source, dlq, f"stream-orch-replay.{group}")


async def test_a_replay_stops_before_writing_when_the_audit_topic_cannot_be_written(audit_topic: str) -> None:
    """Auditing is on and the audit topic's name is one Kafka refuses: one line, exit 3, and the
    DLQ's records are not replayed."""
    source = unique_name("audit-refused.in")
    dlq, group = f"{source}.dlq", unique_name("audit-refused")
    await make_topics(th.BOOTSTRAP, (source, 1), (dlq, 1))
    try:
        producer = clients.producer({"bootstrap_servers": th.BOOTSTRAP})
        await producer.start()
        try:
            await producer.send_and_wait(dlq, b"{}", key=b"k", headers=[("so.error.topic", source.encode())])
        finally:
            await producer.stop()
        env = {
            **os.environ,
            "STREAM_ORCH_BOOTSTRAP_SERVERS": th.BOOTSTRAP,
            "STREAM_ORCH_AUDIT_TOPIC": "bad/name",
        }
        code, out, err = await run_cli("dlq", "replay", dlq, "--group", group, env=env)
        assert code == 3, (out, err)
        assert len(err.strip().splitlines()) == 1 and "bad/name" in err and "Traceback" not in err
        assert sum((await replay_ids(th.BOOTSTRAP, source)).values()) == 0
    finally:
        await _delete(source, dlq, f"stream-orch-replay.{group}")


async def test_a_killed_worker_is_audited_as_an_unclean_stop_by_its_successor(
    tmp_path: Path, audit_topic: str
) -> None:
    """kill -9, then a restart in the same place (state folder, so the same member slot): the
    new worker records the previous one's unclean stop (its pid) before its own start."""
    path, _t, group = rh.fraud_copy(tmp_path)
    settings = Settings(bootstrap_servers=th.BOOTSTRAP, audit_topic=audit_topic)
    worker = th.WorkerProcess(path, tmp_path / "worker.log", env={"STREAM_ORCH_AUDIT_TOPIC": audit_topic})

    async def actions(count: int) -> list[AuditEvent]:
        for _ in range(120):
            events = (await read_events(settings)).events if await _exists(audit_topic) else []
            if len(events) >= count:
                return events
            await asyncio.sleep(0.5)
        raise AssertionError(f"fewer than {count} audit events: {worker.log()}")

    try:
        worker.start()
        await th.wait_for_group(group)
        first = worker.proc.pid  # type: ignore[union-attr]
        await actions(1)  # its start is recorded
        worker.kill()
        worker.start()
        await actions(3)  # the unclean stop and the second start
        assert worker.terminate() == 0, worker.log()
    finally:
        worker.stop()
    events = await actions(4)
    assert [e.action for e in events] == [
        "worker_start",
        "worker_unclean_stop",
        "worker_start",
        "worker_stop",
    ]
    assert events[1].details["pid"] == first and events[1].pid == events[2].pid != first
    assert events[1].details["instance"] == events[0].details["instance"] is not None


async def _exists(topic: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=th.BOOTSTRAP)
    await admin.start()
    try:
        return topic in await admin.list_topics()
    finally:
        await admin.close()


async def test_an_ingest_run_is_audited_once_per_file(tmp_path: Path, audit_topic: str) -> None:
    from benchmarks.ingest_data import SCHEMA, write_csv
    from stream_orch.tools.ingest.ledger import ledger_topic as ingest_ledger

    topic = unique_name("audit-ingest")
    schema = tmp_path / "ingest_payment.avsc"
    schema.write_bytes(orjson.dumps(SCHEMA))
    path = tmp_path / "payments.csv"
    ref = write_csv(path, 300)
    env = {
        **os.environ,
        "STREAM_ORCH_BOOTSTRAP_SERVERS": th.BOOTSTRAP,
        "STREAM_ORCH_AUDIT_TOPIC": audit_topic,
    }
    args = ["ingest", str(path), "--topic", topic, "--format", "csv", "--schema", str(schema), "-q"]
    try:
        await make_topics(th.BOOTSTRAP, (topic, 1))
        code, _out, err = await run_cli(*args, env=env)
        assert code == 4, err  # some rows rejected
        code, out, err = await run_cli(*args, env=env)  # the same file again: nothing published
        assert code == 0 and "already ingested" in out, err
    finally:
        await _delete(topic, ingest_ledger(topic))
    events = (await read_events(Settings(bootstrap_servers=th.BOOTSTRAP, audit_topic=audit_topic))).events
    assert [e.action for e in events] == ["ingest", "ingest"]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    good = ref.rows - len(ref.rejects)
    assert events[0].details == {
        "file": str(path), "topic": topic, "rows": ref.rows, "published": good,
        "rejected": len(ref.rejects), "ledger": digest, "already_done": False,
    }  # fmt: skip
    assert (events[1].details["published"], events[1].details["already_done"]) == (0, True)


async def test_a_worker_whose_audit_writes_fail_warns_counts_and_processes_every_record(
    tmp_path: Path,
) -> None:
    """The audit topic's name is one Kafka refuses: the worker logs a warning, counts the failed
    start record in stream_orch_audit_write_failures_total, and processes every transaction."""
    path, t, group = rh.fraud_copy(tmp_path)
    port = th.free_port()
    worker = th.WorkerProcess(
        path, tmp_path / "worker.log", env={"STREAM_ORCH_AUDIT_TOPIC": "bad/name"}, metrics_port=port
    ).start()
    profiles, txns = rh.crafted(10, 5)[:2]
    enriched, dlq = t["transactions.enriched"], t["transactions.dlq"]
    try:
        await th.wait_for_group(group)
        await rh.produce_bulk(t["customers"], profiles)
        await asyncio.sleep(2)
        coords = await rh.produce_bulk(t["transactions"], txns)
        inputs = [(c, v) for c, (_k, v) in zip(coords, txns, strict=True)]
        async with rh.Watcher([enriched, dlq]) as watch:
            acc = await rh.wait_accounted(watch, inputs, enriched, dlq, timeout=90)
        assert (len(acc.lost), acc.duplicated) == (0, 0), acc.figures()
        failures = (await th.scrape(worker.url))[("stream_orch_audit_write_failures_total", ())]
        assert failures == 1  # its start record; nothing else was audited yet
        assert worker.proc.poll() is None  # type: ignore[union-attr]
        assert worker.terminate() == 0
    finally:
        worker.stop()
    assert (
        "audit record worker_start not written" in worker.log()
        or "cannot open the audit topic" in worker.log()
    )
