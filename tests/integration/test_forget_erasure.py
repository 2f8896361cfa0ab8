"""Erasure requests on the real broker with a real worker (issue 24, item 5): `stream-orch forget`
removes one subject's entries from every table keyed by them, and they stay gone after a worker
restart (restore from the store's checkpoint) and after a cold restore (state folder deleted,
everything read again from the changelogs), while every other subject's entries are exactly what
the input makes them. `--dry-run` writes nothing; the erasure is audited once, without the key."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import shutil
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from stream_orch.state.rocks import RocksStore
from stream_orch.steps.window_state import META
from stream_orch.transport import clients
from tests.kafka_helpers import produce_json, run_cli
from tests.topology_harness import BOOTSTRAP, ISOLATED, WorkerProcess, wait_for_group

pytestmark = pytest.mark.integration

TOPOLOGY = """\
topology: forget_{s}
topics:
  events.{s}: {{partitions: 2, key: user_id}}
  profiles.{s}: {{partitions: 2, key: user_id, compact: true}}
  out.{s}: {{partitions: 2, key: user_id}}
tables:
  profiles: {{topic: profiles.{s}, global: true}}
  seen: {{description: event ids - keyed by event_id and not by the subject}}
  activity: {{description: sliding count per user}}
  totals: {{description: daily count per user}}
nodes:
  count:
    input: events.{s}
    steps:
      - {{step: enrich, table: profiles, key: user_id, on_missing: default, defaults: {{tier: none}}}}
      - {{step: dedupe, field: event_id, table: seen, horizon: 1h}}
      - {{step: aggregate, table: activity, key: user_id, window: 1h, function: count, as: n}}
      - {{step: window, table: totals, key: user_id, kind: tumbling, size: 1d, function: count, as: total}}
    routes:
      - to: out.{s}
    errors:
      dlq: events.dlq.{s}
"""

USERS = [f"u{i}" for i in range(1, 7)]
SUBJECT = "u3"
BASE = 1767225600000 + 3_600_000  # 2026-01-01 01:00 UTC: every event in one day's window
ERASURE_KEY = "test-erasure-key-" + uuid.uuid4().hex


def _events() -> list[dict[str, Any]]:
    events = []
    for i in range(60):
        user = USERS[i % len(USERS)]
        events.append({"event_id": f"e{i}", "user_id": user, "ts": BASE + i * 1000})
    events.append({"event_id": "e7", "user_id": USERS[1], "ts": BASE + 90_000})  # a duplicate id: dropped
    return events


def _reference(events: list[dict[str, Any]], forgotten: set[str]) -> dict[str, Any]:
    """What the tables hold after ``events``, computed from the input: dedupe first (by id, first
    wins), then per user the sorted times (activity) and the count (totals); ids of every user."""
    seen: set[str] = set()
    times: dict[str, list[int]] = defaultdict(list)
    for e in events:
        if e["event_id"] in seen:
            continue
        seen.add(e["event_id"])
        times[e["user_id"]].append(e["ts"])
    return {
        "seen": seen,
        "activity": {u: sorted(ts) for u, ts in times.items() if u not in forgotten},
        "totals": {u: len(ts) for u, ts in times.items() if u not in forgotten},
    }


def _stores(state: Path, topology: str, table: str) -> list[Path]:
    return sorted(state.glob(f"stores/{topology}/*/{table}/*"))


def _tables(state: Path, topology: str) -> dict[str, Any]:
    """The stores a stopped worker left on disk, read table by table."""
    out: dict[str, Any] = {"seen": set(), "activity": {}, "totals": {}, "raw": []}
    for table in ("seen", "activity", "totals"):
        for path in _stores(state, topology, table):
            store = RocksStore(path)
            try:
                for key, value in store.items():
                    out["raw"].append((table, key))
                    if table == "seen" and not key.startswith("\x1e"):
                        out["seen"].add(key)
                    elif table == "activity":
                        out["activity"][key] = sorted(entry[0] for entry in value["e"])
                    elif table == "totals" and key != META:
                        out["totals"][value["k"]] = value["n"]
            finally:
                store.close()
    return out


async def _records(topic: str) -> list[tuple[bytes, bytes | None]]:
    """The committed records (key, value) of the topic's two partitions, read to their ends."""
    consumer = clients.reader({"bootstrap_servers": BOOTSTRAP})
    await consumer.start()
    found: list[tuple[bytes, bytes | None]] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(2)]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        deadline = time.monotonic() + 30
        while any([await consumer.position(tp) < end[tp] for tp in tps]):
            assert time.monotonic() < deadline, f"{topic} not read within 30 s"
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += [(r.key, r.value) for r in records]
    finally:
        await consumer.stop()
    return found


async def _latest(topic: str) -> dict[bytes, bytes | None]:
    """The topic as a table: the latest value per key (None: a tombstone)."""
    return dict(await _records(topic))


async def _end_offsets(topics: list[str]) -> dict[TopicPartition, int]:
    consumer = clients.reader({"bootstrap_servers": BOOTSTRAP})
    await consumer.start()
    try:
        return await consumer.end_offsets([TopicPartition(t, p) for t in topics for p in range(2)])
    finally:
        await consumer.stop()


async def _caught_up(group: str, topic: str, worker: WorkerProcess, timeout: float = 90.0) -> None:
    """Wait until ``group`` has committed the end of every partition of ``topic``."""
    end = await _end_offsets([topic])
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            committed = await admin.list_consumer_group_offsets(group)
            if all(committed.get(tp) is not None and committed[tp].offset >= n for tp, n in end.items()):
                return
            assert worker.proc is not None and worker.proc.poll() is None, worker.log()
            assert time.monotonic() < deadline, f"{group} not caught up: {committed}\n{worker.log()}"
            await asyncio.sleep(0.5)
    finally:
        await admin.close()


async def _audit_records(topic: str) -> list[bytes]:
    consumer = clients.reader({"bootstrap_servers": BOOTSTRAP})
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        found: list[bytes] = []
        deadline = time.monotonic() + 30
        while await consumer.position(tp) < end and time.monotonic() < deadline:
            for records in (await consumer.getmany(tp, timeout_ms=500)).values():
                found += [r.value or b"" for r in records]
        return found
    finally:
        await consumer.stop()


async def test_a_forgotten_key_is_gone_after_a_restart_and_a_cold_restore(tmp_path: Path) -> None:
    s = uuid.uuid4().hex[:8]
    ISOLATED.append(s)
    topology = tmp_path / "forget.yaml"
    topology.write_text(TOPOLOGY.format(s=s))
    name, group = f"forget_{s}", f"forget_{s}.count"
    events_topic, profiles_topic = f"events.{s}", f"profiles.{s}"
    audit = f"audit.forget.{s}"
    env = {"STREAM_ORCH_AUDIT_TOPIC": audit, "STREAM_ORCH_ERASURE_KEY": ERASURE_KEY}
    cli_env = {**env, "STREAM_ORCH_BOOTSTRAP_SERVERS": BOOTSTRAP}
    worker = WorkerProcess(topology, tmp_path / "worker.log", env)
    events = _events()
    try:
        worker.start()
        await wait_for_group(group)  # the worker created its topics
        await produce_json(
            BOOTSTRAP, profiles_topic, [{"user_id": u, "tier": f"t-{u}"} for u in USERS], "user_id"
        )
        await produce_json(BOOTSTRAP, events_topic, events, "user_id")
        await _caught_up(group, events_topic, worker)
        # a running worker holds the entries in its stores: refused, in one line, nothing written
        changelogs = [f"{name}.{t}.changelog" for t in ("seen", "activity", "totals")]
        ends = await _end_offsets([*changelogs, profiles_topic])
        code, out, err = await run_cli("forget", str(topology), "--key", f"user_id={SUBJECT}", env=cli_env)
        assert code != 0 and "stop the workers" in err and f"{group}" in err, (code, out, err)
        assert len(err.strip().splitlines()) == 1, err
        assert await _end_offsets([*changelogs, profiles_topic]) == ends
        assert worker.terminate() == 0, worker.log()
        before = _tables(worker.state_dir, name)
        assert {k: v for k, v in before.items() if k != "raw"} == _reference(events, set())

        changelogs = [f"{name}.{t}.changelog" for t in ("seen", "activity", "totals")]
        ends = await _end_offsets([*changelogs, profiles_topic])
        code, out, err = await run_cli(
            "forget",
            str(topology),
            "--key",
            f"user_id={SUBJECT}",
            "--dry-run",
            "--scan",
            "--format",
            "json",
            env=cli_env,
        )
        assert code == 0, err
        dry = orjson.loads(out)
        # one record per table keyed by user_id: the subject's activity record, its one daily
        # window, its profile; seen is keyed by event_id and not touched
        assert {t: v["removed"] for t, v in dry["tables"].items()} == {
            "activity": 1,
            "totals": 1,
            "profiles": 1,
        }
        assert any("seen" in line and "not keyed by user_id" in line for line in dry["left"])
        assert await _end_offsets([*changelogs, profiles_topic]) == ends  # the dry run wrote nothing
        # --scan counts the subject's records in the topics that may hold them (by key or field)
        subject_events = sum(1 for e in events if e["user_id"] == SUBJECT)
        assert {t["topic"]: t["records"] for t in dry["topics"]} == {
            events_topic: subject_events,
            profiles_topic: 1,
            f"out.{s}": 0,  # the window step holds them: no result yet
            f"events.dlq.{s}": 0,
        }
        assert SUBJECT not in out

        code, out, err = await run_cli(
            "forget", str(topology), "--key", f"user_id={SUBJECT}", env=cli_env, timeout=120
        )
        assert code == 0, err
        assert "table activity (aggregate by user_id): removed 1 entries" in out
        assert f"events.{s}: may hold records of this subject" in out

        more = [{"event_id": "late-1", "user_id": "u1", "ts": BASE + 120_000}]  # processed after the erasure
        expected = _reference(events + more, {SUBJECT})
        for restart in ("restart", "cold restore"):
            if restart == "cold restore":
                shutil.rmtree(worker.state_dir / "stores")
                more.append({"event_id": "late-2", "user_id": "u2", "ts": BASE + 130_000})
                expected = _reference(events + more, {SUBJECT})
            worker.start()
            await produce_json(BOOTSTRAP, events_topic, more[-1:], "user_id")
            await _caught_up(group, events_topic, worker)
            assert worker.terminate() == 0, worker.log()
            after = _tables(worker.state_dir, name)
            assert {k: v for k, v in after.items() if k != "raw"} == expected, restart
            # no key of any table names the subject, in any layout (index entries, windows, chunks)
            assert not [key for table, key in after["raw"] if table != "seen" and SUBJECT in key], restart

        profiles = await _latest(profiles_topic)
        assert profiles[SUBJECT.encode()] is None  # tombstoned: the global table drops it
        assert {k.decode() for k, v in profiles.items() if v is not None} == set(USERS) - {SUBJECT}

        digest = hmac.new(ERASURE_KEY.encode(), f"user_id={SUBJECT}".encode(), hashlib.sha256).hexdigest()
        raw = await _audit_records(audit)
        forgets = [orjson.loads(r) for r in raw if b'"action":"forget"' in r]
        assert len(forgets) == 1, raw
        details = forgets[0]["details"]
        assert details["subject_digest"] == digest and details["digest_key"] == "erasure_key"
        assert details["tables"] == {"activity": 1, "totals": 1, "profiles": 1}
        assert not [r for r in raw if f'"{SUBJECT}"'.encode() in r or b"=" + SUBJECT.encode() in r]
    finally:
        worker.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        await admin.start()
        try:
            await admin.delete_topics([audit])
        except Exception:
            pass
        finally:
            await admin.close()


FED_ONLY = """\
topology: forget_fed_{s}
topics:
  events.{s}: {{partitions: 2, key: user_id}}
  profiles.{s}: {{partitions: 2, key: user_id, compact: true}}
  out.{s}: {{partitions: 2, key: user_id}}
tables:
  profiles: {{topic: profiles.{s}, global: true}}
nodes:
  tier:
    input: events.{s}
    steps:
      - {{step: enrich, table: profiles, key: user_id, on_missing: default, defaults: {{tier: none}}}}
    routes:
      - to: out.{s}
    errors:
      dlq: events.dlq.{s}
"""


async def test_a_table_fed_by_a_topic_forgets_on_a_running_worker(tmp_path: Path) -> None:
    """Only a fed table is keyed by the field: no worker needs to stop, and the running worker's
    global table drops the subject's row as it follows the tombstone (its next lookup misses)."""
    s = uuid.uuid4().hex[:8]
    ISOLATED.append(s)
    topology = tmp_path / "fed.yaml"
    topology.write_text(FED_ONLY.format(s=s))
    group, events_topic, out_topic = f"forget_fed_{s}.tier", f"events.{s}", f"out.{s}"
    audit = f"audit.forget.fed.{s}"
    env = {"STREAM_ORCH_AUDIT_TOPIC": audit, "STREAM_ORCH_ERASURE_KEY": ERASURE_KEY}
    worker = WorkerProcess(topology, tmp_path / "worker.log", env)
    try:
        worker.start()
        await wait_for_group(group)
        await produce_json(
            BOOTSTRAP, f"profiles.{s}", [{"user_id": u, "tier": f"t-{u}"} for u in USERS], "user_id"
        )
        await asyncio.sleep(2.0)  # the follower applies the profiles
        code, out, err = await run_cli(
            "forget", str(topology), "--key", f"user_id={SUBJECT}",
            env={**env, "STREAM_ORCH_BOOTSTRAP_SERVERS": BOOTSTRAP},
        )  # fmt: skip
        assert code == 0, err
        assert "table profiles (fed by" in out and "removed 1 entries" in out
        await asyncio.sleep(2.0)  # the follower applies the tombstone
        await produce_json(BOOTSTRAP, events_topic, [{"user_id": u, "ts": BASE} for u in USERS], "user_id")
        await _caught_up(group, events_topic, worker)
        tiers = {r["user_id"]: r["tier"] for r in map(orjson.loads, (await _latest(out_topic)).values())}
        assert tiers == {u: ("none" if u == SUBJECT else f"t-{u}") for u in USERS}, worker.log()
    finally:
        worker.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        await admin.start()
        try:
            await admin.delete_topics([audit])
        except Exception:
            pass
        finally:
            await admin.close()
