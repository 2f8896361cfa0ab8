"""A batch that fails (here: its produce, once, by a fault put into our own sender) makes its node
start over inside its group: a new producer, offsets rewound to the last commit, tables rebuilt
from their changelogs, the same consumer (no rebalance). Real broker; the worker runs in this
process so the test can reach the node and its consumer."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
from aiokafka.errors import KafkaTimeoutError

from stream_orch.codecs import SchemaRegistry
from stream_orch.reliability.headers import PROCESSED_AT
from stream_orch.runtime import delivery, transactions
from stream_orch.runtime.node import NodeRunner
from stream_orch.runtime.output import hand_over
from stream_orch.runtime.transactions import ExactlyOnce
from stream_orch.runtime.worker import Worker
from stream_orch.settings import Settings
from stream_orch.topology.loader import load_topology
from tests import reliability_harness as rh
from tests import topology_harness as th

pytestmark = pytest.mark.integration


def _producers(node: NodeRunner) -> list[object]:
    # the objects themselves, not their id(): a closed producer that was freed can hand its
    # id to a new one, and the fresh-clone CI once saw exactly that
    delivery = node._delivery
    return list(delivery._producers.values()) if isinstance(delivery, ExactlyOnce) else [delivery._producer]


@pytest.mark.parametrize("processing", rh.GUARANTEES)
async def test_a_failed_batch_starts_the_node_over_without_leaving_the_group(
    tmp_path: Path, processing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, t, group = rh.fraud_copy(tmp_path, processing=processing)
    spec = load_topology(path).spec
    worker = Worker(spec, Settings(bootstrap_servers=th.BOOTSTRAP), SchemaRegistry(th.REPO / "schemas"))
    profiles, txns, expected = rh.crafted(200, 20)
    enriched, dlq = t["transactions.enriched"], t["transactions.dlq"]
    await worker.start()
    try:
        node = worker.runners["score_transactions"]
        await th.wait_for_group(group)
        await rh.produce_bulk(t["customers"], profiles)
        await asyncio.sleep(2)
        half = len(txns) // 2
        coords = await rh.produce_bulk(t["transactions"], txns[:half])
        async with rh.Watcher([enriched, dlq]) as watch:
            assert await watch.wait(lambda x: x.count(enriched) >= half * 0.9, timeout=60)
        consumer, producers = node._consumer, _producers(node)
        failed = []

        async def fail_once(producer, pending):  # the broker did not take this batch
            if not failed:
                failed.append(len(pending))
                raise KafkaTimeoutError("injected: batch not acknowledged")
            return await hand_over(producer, pending)

        for module in (delivery, transactions):
            monkeypatch.setattr(module, "hand_over", fail_once)
        injected_at_ms = time.time() * 1000
        coords += await rh.produce_bulk(t["transactions"], txns[half:])
        inputs = [(c, v) for c, (_k, v) in zip(coords, txns, strict=True)]
        async with rh.Watcher([enriched, dlq]) as watch:
            acc = await rh.wait_accounted(watch, inputs, enriched, dlq, timeout=90)
            outputs = watch.records[enriched]
        after = [
            int(h[PROCESSED_AT])
            for r in outputs
            if int((h := th.headers_of(r))[PROCESSED_AT]) > injected_at_ms
        ]
        rh.record_result(
            f"a batch fails once: its node starts over inside the group ({processing})",
            **acc.figures(),
            node_restarts=node.restarts,
            same_consumer=node._consumer is consumer,
            fault_to_last_output_s=round((max(after) - injected_at_ms) / 1000, 1) if after else None,
        )
        assert failed, "the fault never fired"
        assert node.restarts == 1
        assert node._consumer is consumer, "the node left its group instead of starting over in it"
        assert not any(p is q for p in producers for q in _producers(node)), (
            "a producer of the failed batch is still in use"
        )
        assert acc.lost == [], f"{len(acc.lost)} lost"
        velocities = {}
        for r in outputs:
            v = orjson.loads(r.value)
            velocities.setdefault(v["txn_id"], set()).add(v["velocity_60s"])
        # state rebuilt from the changelogs: a replayed event computes the velocity it had
        assert {tid: {n} for tid, n in expected.items()} == velocities
    finally:
        await worker.shutdown()
