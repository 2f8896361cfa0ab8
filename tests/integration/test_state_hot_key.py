"""One hot key: 40,000 transactions of one account within 40 s of event time. Its velocity window
holds all of them, yet no changelog record grows with it (chunks of 256 entries), so the node
never restarts, every txn_id comes out once and the last velocity_60s is 40,000. Real broker,
real worker, the reference fraud topology (exactly_once, RocksDB stores)."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest

from tests import reliability_harness as rh
from tests.topology_harness import REPO, WorkerProcess, free_port, isolated_topology, scrape, wait_for_group

pytestmark = pytest.mark.integration

N = 40_000
T0 = 1_767_225_600_000


def _txn(i: int) -> bytes:
    return orjson.dumps(
        {
            "txn_id": f"H-{i:05d}",
            "account_id": "A-HOT",
            "customer_id": "C-000001",
            "amount": 5.0,
            "currency": "EUR",
            "merchant_id": "M-1",
            "channel": "online",
            "country": "DE",
            "ts": T0 + i,  # 1 ms apart: all 40,000 within 40 s, so all in one 60 s window
        }
    )


async def test_a_hot_key_neither_restarts_the_node_nor_loses_state(tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    path, t = isolated_topology(REPO / "topologies" / "fraud_detection.yaml", tmp_path, suffix)
    worker = WorkerProcess(path, tmp_path / "worker.log", metrics_port=free_port())
    profile = {
        "customer_id": "C-000001", "name": "Hot", "email": "hot@example.com", "home_country": "DE",
        "risk_tier": "low", "avg_amount": 100.0,
    }  # fmt: skip
    txns = [(b"A-HOT", _txn(i)) for i in range(N)]
    enriched = t["transactions.enriched"]
    try:
        worker.start()
        await wait_for_group(f"fraud_detection_{suffix}.score_transactions")
        await rh.produce_bulk(t["customers"], [(b"C-000001", orjson.dumps(profile))])
        # The profile in the global table before any transaction: else the first batches wait in
        # the retry topics (unknown customer) and come back after later ones, whose velocities
        # then do not count them (the worker's nodes take their partitions over side by side,
        # so the customers' node may start after the transactions' one)
        assert await rh.global_table_loaded([worker.url], t["customers.clean"], 1), worker.log()
        await rh.produce_bulk(t["transactions"], txns)
        async with rh.Watcher([enriched]) as watch:
            assert await watch.wait(lambda w: w.count(enriched) >= N, timeout=180, settle=2.0), worker.log()
            outputs = watch.records[enriched]
        velocities = {}
        for r in outputs:
            v = orjson.loads(r.value)
            velocities.setdefault(v["txn_id"], []).append(v["velocity_60s"])
        samples = await scrape(worker.url)
        restarts = sum(v for (name, _), v in samples.items() if name == "stream_orch_node_restarts_total")
        rh.record_result(
            "hot key: 40,000 transactions of one account within 40 s",
            events_in=N,
            with_output=len(velocities),
            lost=N - len(velocities),
            duplicated_outputs=len(outputs) - len(velocities),
            node_restarts=int(restarts),
            last_velocity=velocities.get(f"H-{N - 1:05d}", [None])[-1],
        )
        assert restarts == 0, worker.log()
        assert len(velocities) == N and all(len(v) == 1 for v in velocities.values())
        assert velocities[f"H-{N - 1:05d}"] == [N]
        assert [velocities[f"H-{i:05d}"][0] for i in range(N)] == list(range(1, N + 1))
        assert worker.terminate() == 0
    finally:
        worker.stop()
