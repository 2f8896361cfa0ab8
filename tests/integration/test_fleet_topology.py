"""The fleet topology (issue 22, item 4) against the real broker, a real worker process and a real
HTTP receiver (the dispatcher, in its own process): generated readings and route plans go in, and

- warnings, criticals, delays, stops reached in time and dead letters (by reason) equal the
  generator's ground truth, each output once on its topic (exactly_once; read committed);
- every critical reaches the dispatcher: the distinct alerts it received are exactly the truth's
  criticals, and it saw one Idempotency-Key per critical. Steady, each was sent once; across a
  kill -9 the HTTP target is at least once (a batch in flight is sent again, under the same key),
  so the repeats are counted and must carry a key the receiver already had;
- the same holds when the worker is killed (kill -9) mid-stream and started again.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_orch.runtime.output import PartitionMap
from stream_orch.testing.http_receiver import read_log
from stream_orch.tools.generate_fleet import FleetPlan, generate_fleet
from tests import reliability_harness as rh
from tests import topology_harness as th

pytestmark = pytest.mark.integration

ALERTS = ("fleet.warnings", "fleet.critical")
STOPS = ("fleet.delays", "fleet.stops")
DLQS = ("fleet.readings.dlq", "fleet.checks.dlq", "fleet.episodes.dlq", "fleet.plan.dlq")


def _receiver(port: int, log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream_orch.testing.http_receiver", "--port", str(port), "--log", str(log),
         "--lifetime", "300"],
        cwd=th.REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"listening"
    return proc


async def _produce_in_order(records: list[Any]) -> None:
    producer = rh._producer(None, max_batch_size=256 * 1024)
    await producer.start()
    try:
        sent = [await producer.send(r.topic, value=r.value, key=r.key) for r in records]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def _reason(record: Any) -> str:
    reason = th.headers_of(record).get("so.error.reason", "?")
    kind, _, detail = reason.partition(":")
    return f"{kind}: {detail.split()[0]}" if detail else kind


def _fleet(tmp_path: Path, suffix: str, **copy: Any) -> tuple[Path, dict[str, str], list[Any], FleetPlan]:
    """An isolated copy of fleet.yaml and 15 vehicles' readings (3,000) and plans (60) for it."""
    path, t = th.isolated_topology(th.REPO / "topologies" / "fleet.yaml", tmp_path, suffix, **copy)
    records, plan = generate_fleet(
        15, seed=5, minutes=100, stops=4, readings_topic=t["fleet.readings"], plan_topic=t["fleet.plan"]
    )
    # every partition of the readings has vehicles, so no source partition holds event time back
    parts = PartitionMap({"r": 6})
    assert {parts.of("r", f"V-{v:04d}".encode()) for v in range(1, 16)} == set(range(6))
    return path, t, records, plan


def _worker(path: Path, tmp_path: Path, port: int) -> th.WorkerProcess:
    env = {"PYTHONPATH": str(th.REPO), "FLEET_DISPATCH_URL": f"http://127.0.0.1:{port}/dispatch"}
    return th.WorkerProcess(path, tmp_path / "worker.log", env=env)


@pytest.mark.parametrize("kill", [False, True], ids=["steady", "kill-9"])
async def test_fleet_outputs_equal_the_generator_s_ground_truth(tmp_path: Path, kill: bool) -> None:
    suffix = uuid.uuid4().hex[:8]
    path, t, records, plan = _fleet(tmp_path, suffix)
    truth = plan.truth()
    expected = {
        "fleet.warnings": len(truth["warnings"]),
        "fleet.critical": len(truth["critical"]),
        "fleet.delays": len(truth["delays"]),
        "fleet.stops": len(truth["on_time"]),
        "fleet.readings.dlq": sum(truth["dlq"].values()),
    }
    port = th.free_port()
    dispatch_log = tmp_path / "dispatch.jsonl"
    receiver = _receiver(port, dispatch_log)
    w = _worker(path, tmp_path, port)
    watched = [t[n] for n in (*ALERTS, *STOPS, *DLQS)]
    try:
        w.start()
        await th.wait_for_group(f"fleet_{suffix}.readings")
        started = time.monotonic()
        async with rh.Watcher(watched) as watch:
            if kill:  # a third in, kill -9 once alerts flow, the rest in, restart
                third = len(records) // 3
                await _produce_in_order(records[:third])
                assert await watch.wait(lambda x: x.count(t["fleet.warnings"]) >= 5, timeout=90), w.log()
                w.kill()
                await _produce_in_order(records[third:])
                w.start()
            else:
                await _produce_in_order(records)
            done = await watch.wait(
                lambda x: all(x.count(t[n]) >= want for n, want in expected.items()), timeout=180, settle=3.0
            )
            elapsed = time.monotonic() - started
            got = {n: [orjson.loads(r.value) for r in watch.records[t[n]]] for n in (*ALERTS, *STOPS)}
            reasons = Counter(_reason(r) for r in watch.records[t["fleet.readings.dlq"]])
            other_dead = {n: watch.count(t[n]) for n in DLQS[1:] if watch.count(t[n])}
        await asyncio.sleep(1)
        requests = read_log(dispatch_log)
        ids = {n: Counter(v["alert_id"] for v in vs) for n, vs in got.items() if n in ALERTS}
        stops = {n: Counter(v["vehicle_stop"] for v in vs) for n, vs in got.items() if n in STOPS}
        dispatched = Counter(r["body"]["alert_id"] for r in requests)
        keys = Counter(r["key"] for r in requests)
        scenario = "kill -9 mid-stream" if kill else "steady"
        rh.record_result(
            f"fleet: outputs equal the generator's ground truth ({scenario})",
            readings=plan.readings,
            stops=plan.stops,
            expected=plan.counts(),
            got={n: len(c) for n, c in {**ids, **stops}.items()},
            duplicated_outputs=sum(n - 1 for c in (*ids.values(), *stops.values()) for n in c.values()),
            lost_alerts=len(set(truth["warnings"]) - set(ids["fleet.warnings"]))
            + len(set(truth["critical"]) - set(ids["fleet.critical"])),
            dispatcher_requests=len(requests),
            dispatcher_repeats=len(requests) - len(keys),
            seconds=round(elapsed, 1),
        )
        assert done, f"{ {n: watch.count(t[n]) for n in expected} } of {expected}\n{w.log()}"
        for counted in (*ids.values(), *stops.values()):
            assert {k: n for k, n in counted.items() if n > 1} == {}, "an output twice on its topic"
        assert sorted(ids["fleet.warnings"]) == truth["warnings"]
        assert sorted(ids["fleet.critical"]) == truth["critical"]
        assert sorted(stops["fleet.delays"]) == truth["delays"]
        assert sorted(stops["fleet.stops"]) == truth["on_time"]
        assert dict(reasons) == truth["dlq"]
        assert other_dead == {}
        # the dispatcher: every critical, one key each, all answered 200
        assert set(dispatched) == set(truth["critical"])
        assert len(keys) == len(truth["critical"])
        assert {r["status"] for r in requests} == {200}
        if not kill:
            assert len(requests) == len(truth["critical"]), "a critical sent twice without a crash"
        assert w.terminate() == 0
    finally:
        w.stop()
        receiver.kill()
        receiver.wait(10)


async def test_criticals_wait_in_the_retry_tiers_while_the_dispatcher_is_down(tmp_path: Path) -> None:
    """The dispatcher is not listening when the criticals are found: they are on fleet.critical at
    once, wait in the retry tiers (2 s, 5 s, 20 s here), and reach the dispatcher once it is up,
    each once (refused connections never reached it); nothing is dead-lettered."""
    suffix = uuid.uuid4().hex[:8]
    path, t, records, plan = _fleet(tmp_path, suffix, retry_delays=["2s", "5s", "20s"])
    truth = plan.truth()
    port = th.free_port()
    dispatch_log = tmp_path / "dispatch.jsonl"
    w = _worker(path, tmp_path, port)
    receiver = None
    try:
        w.start()
        await th.wait_for_group(f"fleet_{suffix}.readings")
        tier1 = f"{t['fleet.episodes']}.retry.1"
        async with rh.Watcher([t["fleet.critical"], t["fleet.episodes.dlq"], tier1]) as watch:
            await _produce_in_order(records)
            on_topic = await watch.wait(
                lambda x: x.count(t["fleet.critical"]) >= len(truth["critical"]), timeout=90
            )
            assert on_topic, w.log()
            receiver = _receiver(port, dispatch_log)
            started = time.monotonic()
            while len(read_log(dispatch_log)) < len(truth["critical"]) and time.monotonic() - started < 60:
                await asyncio.sleep(0.5)
            waited = time.monotonic() - started
            await watch.poll(2.0)
            dead = watch.count(t["fleet.episodes.dlq"])
            retried = sorted(orjson.loads(r.value)["alert_id"] for r in watch.records[tier1])
        requests = read_log(dispatch_log)
        rh.record_result(
            "fleet: criticals retried while the dispatcher is down",
            criticals=len(truth["critical"]),
            dispatcher_requests=len(requests),
            dead_lettered=dead,
            retried_in_tier_1=len(retried),
            seconds_after_the_dispatcher_came_up=round(waited, 1),
        )
        assert sorted(r["body"]["alert_id"] for r in requests) == truth["critical"], w.log()
        assert len({r["key"] for r in requests}) == len(truth["critical"])
        assert retried == truth["critical"], "each critical failed once first (connection refused)"
        assert dead == 0
        assert w.terminate() == 0
    finally:
        w.stop()
        if receiver is not None:
            receiver.kill()
            receiver.wait(10)
