"""The reconciliation reference topology (issue 13) against the real broker: a real worker joins
generated payments and settlements, and every output topic holds exactly the payments the
generator's ground truth puts there, once each, across a kill -9 too (exactly_once)."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections import Counter
from pathlib import Path

import orjson
import pytest

from stream_orch.tools.generate_recon import generate_reconciliation
from tests import reliability_harness as rh
from tests import topology_harness as th

pytestmark = pytest.mark.integration

OUTCOMES = {
    "reconciled": "payments.reconciled",
    "mismatch": "payments.mismatch",
    "unreconciled": "payments.unreconciled",
}


def _outputs(records: dict[str, list], t: dict[str, str]) -> tuple[dict[str, str], Counter, dict[str, str]]:
    """payment_id -> outcome topic, copies per payment, severity of the unreconciled."""
    where: dict[str, str] = {}
    copies: Counter[str] = Counter()
    severity: dict[str, str] = {}
    for outcome, name in OUTCOMES.items():
        for r in records[t[name]]:
            v = orjson.loads(r.value)
            where[v["payment_id"]] = outcome
            copies[v["payment_id"]] += 1
            if outcome == "unreconciled":
                severity[v["payment_id"]] = v["severity"]
    return where, copies, severity


async def _produce_in_order(records: list) -> None:
    """Both topics from one producer, in the generator's (event-time) order."""
    producer = rh._producer(None, max_batch_size=256 * 1024)
    await producer.start()
    try:
        sent = [await producer.send(r.topic, value=r.value, key=r.key) for r in records]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


@pytest.mark.parametrize(
    ("kill", "cold"), [(False, False), (True, False), (True, True)], ids=["steady", "kill-9", "kill-9-cold"]
)
async def test_reconciliation_outputs_equal_the_generator_s_ground_truth(
    tmp_path: Path, kill: bool, cold: bool
) -> None:
    suffix = uuid.uuid4().hex[:8]
    path, t = th.isolated_topology(th.REPO / "topologies" / "reconciliation.yaml", tmp_path, suffix)
    group = f"reconciliation_{suffix}.reconcile"
    records, plan = generate_reconciliation(
        3000, seed=11, payments_topic=t["payments"], settlements_topic=t["settlements"]
    )
    w = rh.worker(path, tmp_path / "worker.log")
    watched = [t[name] for name in OUTCOMES.values()] + [t["payments.dlq"]]
    scenario = ("kill -9 mid-stream" + (", stores deleted" if cold else "")) if kill else "steady"
    try:
        w.start()
        await th.wait_for_group(group)
        started = time.monotonic()
        async with rh.Watcher(watched) as watch:
            if kill:  # half in, kill -9 once outputs flow, the rest in, restart
                half = len(records) // 2
                await _produce_in_order(records[:half])
                assert await watch.wait(lambda x: sum(x.count(n) for n in watched) >= 300, timeout=60), (
                    w.log()
                )
                w.kill()
                if cold:  # a restore from the changelog alone: the join's time index, kept
                    # out of the changelog, is rebuilt from the buffered records (derive)
                    shutil.rmtree(w.state_dir / "stores")
                await _produce_in_order(records[half:])
                w.start()
            else:
                await _produce_in_order(records)
            done = await watch.wait(
                lambda x: sum(x.count(n) for n in watched) >= len(plan.outcome), timeout=120, settle=3.0
            )
            elapsed = time.monotonic() - started
            where, copies, severity = _outputs(watch.records, t)
            dead = watch.count(t["payments.dlq"])
        rh.record_result(
            f"reconciliation: outputs equal the generator's ground truth ({scenario})",
            events_in=len(records),
            payments=plan.payments,
            expected=plan.counts(),
            got=dict(Counter(where.values())),
            lost=len(set(plan.outcome) - set(where)),
            duplicated_outputs=sum(n - 1 for n in copies.values()),
            seconds=round(elapsed, 1),
        )
        assert done, f"{len(where)} of {len(plan.outcome)} payments reported\n{w.log()}"
        assert dead == 0
        assert {pid: n for pid, n in copies.items() if n > 1} == {}, "a payment reported twice"
        wrong = {pid: (where.get(pid), want) for pid, want in plan.outcome.items() if where.get(pid) != want}
        assert wrong == {}, f"{len(wrong)} payments in the wrong place, e.g. {list(wrong.items())[:5]}"
        assert severity == plan.severity
        assert w.terminate() == 0
    finally:
        w.stop()
