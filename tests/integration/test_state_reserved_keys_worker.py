"""A record whose key is one of the store's reserved keys (issue 19, item 3), on the real broker with
a real worker (the reference fraud topology, RocksDB stores): txn_ids equal to the keys the store
kept its format, checkpoint and key count under are deduplicated like any other, and after a
restart the worker reuses its stores (reads nothing from the changelogs) instead of calling them
corrupt and rebuilding them."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import orjson
import pytest

from benchmarks.kafka import sweep_topics
from tests import reliability_harness as rh
from tests.topology_harness import (
    BOOTSTRAP,
    REPO,
    WorkerProcess,
    collect,
    free_port,
    isolated_topology,
    produce_raw,
    scrape,
    wait_for_group,
)

pytestmark = pytest.mark.integration

KEY_ENV = {"STREAM_ORCH_MASK_KEY": "test-key"}  # the fraud topology's mask key

RESERVED = ["\x00stream-orch.format", "\x00stream-orch.checkpoint", "\x00stream-orch.count"]
T0 = 1_767_225_600_000
PROFILE = {
    "customer_id": "C-000400", "name": "Name 400", "email": "c400@example.com", "home_country": "GB",
    "risk_tier": "low", "avg_amount": 200.0,
}  # fmt: skip


def _txn(txn_id: str, ts: int) -> tuple[bytes, bytes]:
    value = {
        "txn_id": txn_id, "account_id": "A-8", "customer_id": "C-000400", "amount": 10,
        "currency": "GBP", "merchant_id": "M-1", "channel": "card_present", "country": "GB", "ts": ts,
    }  # fmt: skip
    return b"A-8", orjson.dumps(value)


async def test_reserved_keys_as_txn_ids_do_not_make_the_stores_rebuild(tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    path, t = isolated_topology(REPO / "topologies" / "fraud_detection.yaml", tmp_path, suffix)
    worker = WorkerProcess(path, tmp_path / "worker.log", env=KEY_ENV, metrics_port=free_port())
    enriched = t["transactions.enriched"]
    first = [_txn(key, T0 + i * 1000) for i, key in enumerate([*RESERVED, "plain"])]
    try:
        worker.start()
        await wait_for_group(f"fraud_detection_{suffix}.score_transactions")
        await produce_raw(t["customers"], [(b"C-000400", orjson.dumps(PROFILE))])
        assert await rh.global_table_loaded([worker.url], t["customers.clean"], 1), worker.log()
        await produce_raw(t["transactions"], first)
        await collect([enriched], until=lambda s: len(s[enriched]) >= 4, timeout=60, settle=0)
        await asyncio.sleep(1.5)  # the batch's changelog writes and commit
        assert worker.terminate() == 0, worker.log()

        worker.start()
        again = [*first, _txn("after", T0 + 10_000)]  # the first four again: duplicates
        await produce_raw(t["transactions"], again)
        got = await collect([enriched], until=lambda s: len(s[enriched]) >= 5, timeout=90, settle=3.0)
        ids = [orjson.loads(r.value)["txn_id"] for r in got[enriched]]
        assert sorted(ids) == sorted([*RESERVED, "plain", "after"]), worker.log()
        metrics = await scrape(worker.url)
        labels = (("node", "score_transactions"), ("table", "seen_txns"))
        restored = metrics[("stream_orch_table_restored_records_total", labels)]
        assert "cannot be trusted" not in worker.log(), worker.log()
        assert restored == 0, "the restart read the changelog: the store was not reused"
        assert worker.terminate() == 0
    finally:
        worker.stop()
        await sweep_topics(BOOTSTRAP, suffix)  # the topology's topics, changelogs and retries
