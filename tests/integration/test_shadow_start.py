"""Where a shadow run starts, on the real broker: without `--from-time` at the live group's
committed offsets (it sees what is produced from then on, nothing the live version had already
done), and a new start for a running shadow is refused in one line; with `--from-time` at the
first record of that time (a backtest: records older than it are not seen, every later one is,
once)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from stream_orch.audit.read import read_events
from stream_orch.reliability import headers as H
from stream_orch.settings import Settings
from tests import reliability_harness as rh
from tests.integration.test_shadow_runs import read_all, wait_done
from tests.kafka_helpers import run_cli
from tests.topology_harness import BOOTSTRAP, wait_for_group

pytestmark = pytest.mark.integration

DOC = {
    "topology": "shadow_start",
    "version": "1",
    "topics": {"events": {"partitions": 3, "key": "id"}, "out": {"partitions": 3, "key": "id"}},
    "nodes": {"work": {"input": "events", "routes": [{"to": "out"}], "errors": {"dlq": "events.dlq"}}},
}
HOUR = 3_600_000


async def produce(topic: str, ids: range, ts: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
    await producer.start()
    try:
        for i in ids:
            await producer.send(
                topic, f'{{"id": "e{i}"}}'.encode(), key=f"e{i}".encode(), timestamp_ms=ts + i
            )
        await producer.flush()
    finally:
        await producer.stop()


def seen_ids(records: list) -> list[str]:
    return sorted(r.value.decode().split('"')[3] for r in records)


async def test_a_shadow_starts_at_the_live_offsets_or_at_the_time_given(tmp_path: Path):
    path, t, group = rh.topology_copy(tmp_path, DOC)
    shadow_group = group.replace(".work", ".shadow.work")
    now = int(time.time() * 1000)
    live = rh.worker(path, tmp_path / "live.log")
    first = rh.worker(path, tmp_path / "shadow1.log")
    second = rh.worker(path, tmp_path / "shadow2.log")
    env = {"STREAM_ORCH_BOOTSTRAP_SERVERS": BOOTSTRAP}
    try:
        live.start()
        await wait_for_group(group)
        await produce(t["events"], range(0, 20), now - 3 * HOUR)  # A1
        await produce(t["events"], range(20, 40), now - 1 * HOUR)  # A2
        await wait_done(group, t["events"])
        # no --from-time: from the live group's committed offsets on
        first.start("--shadow")
        await wait_for_group(shadow_group)
        # a new start for a shadow that runs is refused in one line (its members own the offsets)
        code, _out, err = await run_cli(
            "run", str(path), "--schemas", str(rh.REPO / "schemas"), "--shadow", "--from-time", "1h", env=env
        )
        assert code == 2 and "(it has members): is it running? Stop its workers first" in err, err
        assert err.strip().count("\n") == 0, err
        await produce(t["events"], range(40, 60), now)  # B
        await wait_done(shadow_group, t["events"])
        await wait_done(group, t["events"])
        from_live = (await read_all([t["out"] + ".shadow"]))[t["out"] + ".shadow"]
        assert first.terminate() == 0, first.log()
        code, _out, err = await run_cli("shadow", "delete", str(path), env=env)
        assert code == 0, err
        # --from-time between A1 and A2: A2 and B, not A1
        at = datetime.fromtimestamp((now - 2 * HOUR) / 1000, UTC).isoformat()
        second.start("--shadow", "--from-time", at)
        await wait_done(shadow_group, t["events"])
        backtest = (await read_all([t["out"] + ".shadow"]))[t["out"] + ".shadow"]
        live_out = (await read_all([t["out"]]))[t["out"]]
        assert second.terminate() == 0, second.log()
        code, _out, err = await run_cli("shadow", "delete", str(path), env=env)
        assert code == 0, err
    finally:
        for w in (second, first, live):
            w.stop()
    assert seen_ids(from_live) == sorted(f"e{i}" for i in range(40, 60))
    assert seen_ids(backtest) == sorted(f"e{i}" for i in range(20, 60))
    assert seen_ids(live_out) == sorted(f"e{i}" for i in range(60))  # the live version saw all, once
    # the shadow's records name the inputs they came from: B's and A2's offsets, no other
    sources = {(r.partition, rh._h(r)[H.SRC_OFFSET]) for r in backtest}
    assert len(sources) == 40
    # each shadow start is audited once, with where it started (the refused start is not)
    topology = group.removesuffix(".work") + ".shadow"
    settings = Settings(bootstrap_servers=BOOTSTRAP)
    audited = await read_events(settings, topology=topology, action="shadow_start")
    starts = [(e.details["from_time_ms"], e.pid) for e in audited.events]
    at_ms = int(datetime.fromisoformat(at).timestamp() * 1000)
    assert starts == [(None, first.proc.pid), (at_ms, second.proc.pid)], audited.events
