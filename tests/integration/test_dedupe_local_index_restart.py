"""dedupe's time index kept locally (issue 25) on the real broker with a real worker: the
changelog holds only the ids; after kill -9 and a restart with the local stores deleted, the
index rebuilt from the changelog finds duplicates and expires exactly the old ids; an erased id
(`stream-orch forget`) leaves no index entry after a restart or a cold restore. The expected ids
and outputs are computed from the input records."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_orch.state.rocks import RocksStore
from stream_orch.steps.dedupe import INDEX, index_key
from tests.integration.test_forget_erasure import _caught_up, _latest, _records
from tests.kafka_helpers import produce_json, run_cli
from tests.topology_harness import BOOTSTRAP, ISOLATED, WorkerProcess, wait_for_group

pytestmark = pytest.mark.integration

TOPOLOGY = """\
topology: ddlocal_{s}
topics:
  events.{s}: {{partitions: 2, key: user_id}}
  out.{s}: {{partitions: 2, key: user_id}}
tables:
  seen: {{description: event ids seen in the last hour}}
nodes:
  dedupe:
    input: events.{s}
    steps:
      - {{step: dedupe, field: event_id, table: seen, horizon: 1h}}
    routes:
      - to: out.{s}
    errors:
      dlq: events.dlq.{s}
"""

H = 3_600_000
BASE = 1767225600000  # 2026-01-01 00:00 UTC
PRUNE_WAIT_S = 62.0  # the worker prunes every 60 s (node.PRUNE_INTERVAL_S), from its start


def _event(n: str, ts: int) -> dict[str, Any]:
    # an id keeps its user (and so its partition): the dedupe state is per partition
    return {"event_id": n, "user_id": f"u{sum(map(ord, n)) % 6}", "ts": ts}


def _passes(events: list[dict[str, Any]], seen: dict[str, int]) -> list[str]:
    """The rule on the input: an id seen within the horizon is a duplicate; ``seen`` is updated."""
    out = []
    for e in events:
        before = seen.get(e["event_id"])
        if before is not None and abs(e["ts"] - before) < H:
            continue
        seen[e["event_id"]] = e["ts"] if before is None else max(before, e["ts"])
        out.append(e["event_id"])
    return out


def _stores(state: Path, topology: str) -> tuple[dict[str, int], list[str]]:
    """The ids and the index keys a stopped worker's stores hold."""
    ids: dict[str, int] = {}
    index: list[str] = []
    for path in sorted(state.glob(f"stores/{topology}/*/seen/*")):
        store = RocksStore(path)
        try:
            for key, value in store.items():
                if key.startswith(INDEX):
                    index.append(key)
                else:
                    ids[key] = value
        finally:
            store.close()
    return ids, sorted(index)


async def test_index_rebuilt_after_kill_9_and_a_cold_restart_then_erasure(tmp_path: Path) -> None:
    s = uuid.uuid4().hex[:8]
    ISOLATED.append(s)
    topology = tmp_path / "ddlocal.yaml"
    topology.write_text(TOPOLOGY.format(s=s))
    name, group = f"ddlocal_{s}", f"ddlocal_{s}.dedupe"
    events_topic, changelog = f"events.{s}", f"ddlocal_{s}.seen.changelog"
    worker = WorkerProcess(topology, tmp_path / "worker.log")
    seen: dict[str, int] = {}
    passed: list[str] = []
    try:
        worker.start()
        await wait_for_group(group)
        first = [_event(f"e{i}", BASE + i * 1000) for i in range(150)]
        first += [_event(f"e{i}", BASE + 200_000 + i) for i in range(0, 150, 3)]  # duplicates
        passed += _passes(first, seen)
        await produce_json(BOOTSTRAP, events_topic, first, "user_id")
        await _caught_up(group, events_topic, worker)
        records = await _records(changelog)
        assert not [k for k, _ in records if k.startswith(INDEX.encode())], "no index in the changelog"
        assert sorted(k.decode() for k, _ in records) == sorted(seen), "one record per id"

        worker.kill()  # kill -9, then the local stores go: a cold restore from the changelog
        shutil.rmtree(worker.state_dir / "stores")
        worker.start()
        started = time.monotonic()
        await wait_for_group(group)
        later = [_event(f"e{i}", BASE + 300_000 + i) for i in range(1, 150, 4)]  # duplicates
        later += [_event(f"n{i}", BASE + 2 * H + i * 1000) for i in range(40)]  # the old ids expire
        passed += _passes(later, seen)
        await produce_json(BOOTSTRAP, events_topic, later, "user_id")
        await _caught_up(group, events_topic, worker)
        time.sleep(max(0.0, PRUNE_WAIT_S - (time.monotonic() - started)))
        trigger = [_event(f"m{i}", BASE + 2 * H + 60_000 + i) for i in range(6)]  # a batch: prune runs
        passed += _passes(trigger, seen)
        await produce_json(BOOTSTRAP, events_topic, trigger, "user_id")
        await _caught_up(group, events_topic, worker)
        assert worker.terminate() == 0, worker.log()

        outputs = [orjson.loads(v)["event_id"] for _, v in await _records(f"out.{s}") if v]
        assert sorted(outputs) == sorted(passed), "duplicates dropped, nothing else, nothing twice"
        # the watermark of each partition is its newest n* or m* id: BASE + 2 h and more, so every
        # e* id (at most BASE + 300 s) is past the 1 h horizon and pruned; n* and m* are not
        expected = {k: v for k, v in seen.items() if not k.startswith("e")}
        ids, index = _stores(worker.state_dir, name)
        assert ids == expected
        assert index == sorted(index_key(v, k) for k, v in expected.items()), "one entry per id"
        latest = await _latest(changelog)
        assert {k.decode() for k, v in latest.items() if v is not None} == set(expected)

        erased = "n7"
        code, _out, err = await run_cli(
            "forget", str(topology), "--key", f"event_id={erased}",
            env={"STREAM_ORCH_BOOTSTRAP_SERVERS": BOOTSTRAP}, timeout=120,
        )  # fmt: skip
        assert code == 0, err
        del expected[erased]
        more: list[dict[str, Any]] = []
        for restart in ("restart", "cold restore"):
            if restart == "cold restore":
                shutil.rmtree(worker.state_dir / "stores")
            worker.start()
            await wait_for_group(group)
            more.append(_event(f"x{len(more)}", BASE + 2 * H + 120_000 + len(more)))
            passed += _passes(more[-1:], seen)
            expected[more[-1]["event_id"]] = more[-1]["ts"]
            await produce_json(BOOTSTRAP, events_topic, more[-1:], "user_id")
            await _caught_up(group, events_topic, worker)
            assert worker.terminate() == 0, worker.log()
            ids, index = _stores(worker.state_dir, name)
            assert ids == expected, restart
            assert index == sorted(index_key(v, k) for k, v in expected.items()), restart
            assert not [k for k in index if k.endswith(INDEX + erased)], restart
    finally:
        worker.stop()
