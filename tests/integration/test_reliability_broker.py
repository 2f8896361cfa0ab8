"""Stop the broker for 15-20 s mid-stream and start it again: the worker survives and finishes with
zero loss. Uses a broker of its own (port 19192 or the next free pair), never the shared one."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests import reliability_harness as rh
from tests import topology_harness as th
from tests.topology_harness import wait_for_group

pytestmark = pytest.mark.integration

DOWN_S = 12.0  # plus ~5 s for `kafka down` itself: the broker is away 15-20 s


@pytest.fixture
def own_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    broker = rh.OwnBroker(tmp_path / "kafka-state")
    broker.up()
    monkeypatch.setattr(th, "BOOTSTRAP", broker.bootstrap)  # produce, watch and group checks
    try:
        yield broker
    finally:
        broker.down()


@pytest.mark.xfail(
    strict=False,
    reason="open: since batches are pipelined the worker often finishes its input before the outage "
    "and then does not resume after the broker is back (aiokafka marks the coordinator dead on "
    "heartbeat expiry and no node restart follows); see the closing note of the reliability issue",
)
async def test_broker_down_15s_mid_stream(tmp_path: Path, own_broker: rh.OwnBroker) -> None:
    path, t, group = rh.fraud_copy(tmp_path)
    w = rh.worker(path, tmp_path / "worker.log", server=own_broker.bootstrap)
    profiles, txns, _expected = rh.crafted(400, 50)
    enriched, dlq = t["transactions.enriched"], t["transactions.dlq"]
    try:
        w.start()
        await wait_for_group(group)
        await rh.produce_bulk(t["customers"], profiles)
        await asyncio.sleep(2)
        # Most of the input before the outage, the rest once the broker is back: the worker is then
        # mid-stream whatever its speed (it used to finish everything before the broker stopped).
        cut = len(txns) * 3 // 5
        coords = await rh.produce_bulk(t["transactions"], txns[:cut])
        async with rh.Watcher([enriched, dlq]) as watch:
            assert await watch.wait(lambda x: x.count(enriched) >= 1000, timeout=60), w.log()
        await asyncio.to_thread(own_broker.down)
        stopped_at = time.monotonic()
        await asyncio.sleep(DOWN_S)
        assert w.proc.poll() is None, "the worker died with the broker\n" + w.log()
        up_s = await asyncio.to_thread(own_broker.up)
        back_at = time.monotonic()
        coords += await rh.produce_bulk(t["transactions"], txns[cut:])
        inputs = [(c, v) for c, (_k, v) in zip(coords, txns, strict=True)]
        async with rh.Watcher([enriched, dlq]) as watch:
            await watch.poll(1.0)
            seen = watch.count(enriched)
            assert await watch.wait(lambda x: x.count(enriched) > seen, timeout=90), w.log()
            resumed_s = time.monotonic() - back_at
            acc = await rh.wait_accounted(watch, inputs, enriched, dlq, timeout=90)
        rh.record_result(
            f"broker stopped {DOWN_S:.0f} s mid-stream",
            **acc.figures(),
            broker_down_s=round(back_at - stopped_at, 1),
            broker_start_s=round(up_s, 1),
            recover_after_broker_up_s=round(resumed_s, 1),
            worker_restarted_itself=w.proc.poll() is None,
        )
        assert acc.lost == [], f"{len(acc.lost)} lost\n{w.log()}"
        assert w.terminate() == 0
    finally:
        w.stop()
