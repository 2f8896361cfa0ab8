"""Zero loss through kill -9 (one worker, and one of two), and SIGTERM under load, on the real
broker with real worker processes, under both guarantees; under exactly_once also nothing twice,
as a read_committed consumer of every output topic sees it, and state equal to a reference
computed from the input. Figures go to .state/reliability-results.jsonl (rendered by
tests/reliability_report.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from stream_orch.tools.generate import generate_fraud
from tests import reliability_harness as rh
from tests.topology_harness import free_port, headers_of, wait_for_group

pytestmark = pytest.mark.integration

EVENTS = 20_000


async def _start_and_load_profiles(workers, t, group, profiles) -> None:
    for w in workers:
        w.start()
    await wait_for_group(group)
    await rh.produce_bulk(t["customers"], profiles)
    loaded = await rh.global_table_loaded([w.url for w in workers], t["customers.clean"], len(profiles))
    assert loaded, "\n".join(w.log() for w in workers)


async def test_kill_9_under_load_then_restart(tmp_path: Path) -> None:
    path, t, group = rh.fraud_copy(tmp_path, processing="at_least_once")
    w = rh.worker(path, tmp_path / "worker.log", metrics_port=free_port())
    records, plan = generate_fraud(
        600, EVENTS, seed=41, customers_topic=t["customers"], transactions_topic=t["transactions"]
    )
    first_txn = next(i for i, r in enumerate(records) if r.topic == t["transactions"])
    early = [(r.key, r.value) for r in records[:first_txn]]
    txns = [(r.key, r.value) for r in records if r.topic == t["transactions"]]
    late = [(r.key, r.value) for r in records[first_txn:] if r.topic == t["customers"]]
    enriched, dlq = t["transactions.enriched"], t["transactions.dlq"]
    try:
        await _start_and_load_profiles([w], t, group, early)
        producing = asyncio.create_task(rh.produce_bulk(t["transactions"], txns))
        async with rh.Watcher([enriched, dlq]) as watch:
            assert await watch.wait(lambda x: x.count(enriched) >= EVENTS * 0.3, timeout=60), w.log()
            w.kill()
            killed_at = time.monotonic()
            at_kill = watch.count(enriched)
            await watch.poll(1.0)
            baseline = watch.count(enriched)
            w.start()
            assert await watch.wait(lambda x: x.count(enriched) > baseline, timeout=60), w.log()
            recovered_s = time.monotonic() - killed_at
            coords = await producing
            await rh.produce_bulk(t["customers"], late)
            inputs = [(c, v) for c, (_k, v) in zip(coords, txns, strict=True)]
            acc = await rh.wait_accounted(watch, inputs, enriched, dlq, timeout=90)
        rh.record_result(
            "kill -9 one worker under load, restart",
            **acc.figures(),
            generated_invalid=plan.patterns["invalid"],
            generated_duplicates=plan.patterns["duplicate"],
            outputs_before_kill=at_kill,
            recover_s=round(recovered_s, 1),
        )
        assert acc.lost == [], f"{len(acc.lost)} lost, e.g. {acc.lost[:5]}\n{w.log()}"
        assert acc.dead_lettered >= plan.patterns["invalid"]
        assert w.terminate() == 0
    finally:
        w.stop()


async def test_exactly_once_kill_9_at_2k_per_s_nothing_lost_nothing_twice(
    tmp_path: Path,
) -> None:
    path, t, group = rh.fraud_copy(tmp_path, processing="exactly_once")
    w = rh.worker(path, tmp_path / "worker.log", metrics_port=free_port())
    profiles, txns, expected = rh.crafted(400, 50)
    outputs = [t[name] for name in rh.FRAUD_OUTPUTS]
    enriched, dlq = t["transactions.enriched"], t["transactions.dlq"]
    try:
        await _start_and_load_profiles([w], t, group, profiles)
        producing = asyncio.create_task(rh.produce_paced(t["transactions"], txns, rate=2000))
        async with rh.Watcher(outputs) as watch:
            assert await watch.wait(lambda x: x.count(enriched) >= len(expected) * 0.3, timeout=60), w.log()
            assert not producing.done(), "killed after the input was all produced: not mid-stream"
            w.kill()
            await watch.poll(1.0)
            restarted_ms = time.time() * 1000
            w.start()
            coords = await producing
            inputs = [(c, v) for c, (_k, v) in zip(coords, txns, strict=True) if c is not None]
            acc = await rh.wait_accounted(watch, inputs, enriched, dlq, timeout=90)
            await watch.poll(2.0)  # a late second copy would show up now
        found = rh.verdict(watch.records, enriched, expected)
        after = rh.processed_after(watch.records[enriched], restarted_ms)
        rh.record_result(
            "exactly_once: kill -9 under load (2k/s), restart",
            **acc.figures(),
            **found.figures(),
            first_output_after_restart_s=round((min(after) - restarted_ms) / 1000, 1) if after else None,
        )
        found.assert_exactly_once(acc, expected, w.log())
        assert w.terminate() == 0
    finally:
        w.stop()


@pytest.mark.parametrize("processing", rh.GUARANTEES)
async def test_two_workers_one_killed_the_other_takes_over(tmp_path: Path, processing: str) -> None:
    path, t, group = rh.fraud_copy(tmp_path, processing=processing)
    w1 = rh.worker(path, tmp_path / "worker1.log", metrics_port=free_port())
    w2 = rh.worker(path, tmp_path / "worker2.log", metrics_port=free_port())
    profiles, txns, expected = rh.crafted(400, 50)
    enriched, dlq = t["transactions.enriched"], t["transactions.dlq"]
    try:
        await _start_and_load_profiles([w1, w2], t, group, profiles)
        producing = asyncio.create_task(rh.produce_bulk(t["transactions"], txns))
        async with rh.Watcher([t[name] for name in rh.FRAUD_OUTPUTS]) as watch:
            assert await watch.wait(lambda x: x.count(enriched) >= len(expected) * 0.3, timeout=60), w1.log()
            w1.kill()
            killed_at = time.monotonic()
            await watch.poll(0.5)
            # the survivor only gets w1's partitions after the session timeout (10 s)
            coords = await producing
            inputs = [(c, v) for c, (_k, v) in zip(coords, txns, strict=True)]
            acc = await rh.wait_accounted(watch, inputs, enriched, dlq, timeout=90)
            done_s = time.monotonic() - killed_at
            outputs = watch.records[enriched]
        by_id: dict[str, set[tuple[int, int]]] = {}
        wrong_velocity = []
        for r in outputs:
            v = orjson.loads(r.value)
            h = headers_of(r)
            by_id.setdefault(v["txn_id"], set()).add((int(h["so.src.partition"]), int(h["so.src.offset"])))
            if v["velocity_60s"] != expected[v["txn_id"]]:
                wrong_velocity.append((v["txn_id"], v["velocity_60s"], expected[v["txn_id"]]))
        duplicated = rh.duplicated_per_topic(watch.records)
        rh.record_result(
            f"two workers, kill -9 one, the other takes over ({processing})",
            **acc.figures(),
            duplicated_any_output=sum(duplicated.values()),
            takeover_and_finish_s=round(done_s, 1),
            wrong_velocity=len(wrong_velocity),
        )
        assert acc.lost == [], f"{len(acc.lost)} lost\n{w2.log()}"
        if processing == "exactly_once":
            assert duplicated == {}, duplicated
        assert sorted(by_id) == sorted(expected)
        # dedupe state came back: an input duplicate never produced a second output of its own
        assert [tid for tid, c in by_id.items() if len(c) > 1] == []
        # velocity state came back (and replays are not counted twice)
        assert wrong_velocity == [], wrong_velocity[:10]
        assert w2.terminate() == 0
    finally:
        w1.stop()
        w2.stop()


@pytest.mark.parametrize("processing", rh.GUARANTEES)
async def test_sigterm_under_load_exits_0_and_restart_neither_loses_nor_re_emits(
    tmp_path: Path, processing: str
) -> None:
    path, t, group = rh.fraud_copy(tmp_path, processing=processing)
    w = rh.worker(path, tmp_path / "worker.log", metrics_port=free_port())
    profiles, txns, expected = rh.crafted(400, 50)
    enriched, dlq = t["transactions.enriched"], t["transactions.dlq"]
    bound = 20.0
    try:
        await _start_and_load_profiles([w], t, group, profiles)
        producing = asyncio.create_task(rh.produce_bulk(t["transactions"], txns))
        async with rh.Watcher([enriched, dlq]) as watch:
            assert await watch.wait(lambda x: x.count(enriched) >= len(expected) * 0.4, timeout=60), w.log()
            w.proc.send_signal(15)
            sent = time.monotonic()
            code = await asyncio.to_thread(w.proc.wait, bound + 10)
            stop_s = time.monotonic() - sent
            await watch.poll(1.0)
            before_restart = watch.count(enriched)
            w.start("--stop-timeout", str(bound))
            coords = await producing
            inputs = [(c, v) for c, (_k, v) in zip(coords, txns, strict=True)]
            acc = await rh.wait_accounted(watch, inputs, enriched, dlq, timeout=90)
        rh.record_result(
            f"SIGTERM under load, restart ({processing})",
            **acc.figures(),
            exit_code=code,
            stop_s=round(stop_s, 2),
            outputs_before_restart=before_restart,
        )
        assert code == 0, w.log()
        assert stop_s < bound, stop_s
        assert acc.lost == [], w.log()
        assert acc.duplicated == 0, "committed work was emitted again after the restart"
        assert acc.duplicated_txn_ids == 0
        assert w.terminate() == 0
    finally:
        w.stop()
