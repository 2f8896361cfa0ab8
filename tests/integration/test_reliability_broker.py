"""Stop the broker for 15-20 s mid-stream and start it again: the worker survives and finishes with
zero loss. Uses a broker of its own (port 19192 or the next free pair), never the shared one."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from stream_orch.reliability.headers import PROCESSED_AT
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


@pytest.mark.parametrize("processing", rh.GUARANTEES)
async def test_broker_down_15s_mid_stream(tmp_path: Path, own_broker: rh.OwnBroker, processing: str) -> None:
    path, t, group = rh.fraud_copy(tmp_path, processing=processing)
    w = rh.worker(path, tmp_path / "worker.log", server=own_broker.bootstrap, metrics_port=th.free_port())
    profiles, txns, _expected = rh.crafted(400, 50)
    enriched, dlq = t["transactions.enriched"], t["transactions.dlq"]
    try:
        w.start()
        await wait_for_group(group)
        await rh.produce_bulk(t["customers"], profiles)
        await asyncio.sleep(2)
        # A live source at 2k records/s: the broker goes away while records are being produced
        # and processed, and the producer's buffered sends go through once it is back.
        producing = asyncio.create_task(rh.produce_paced(t["transactions"], txns, rate=2000))
        async with rh.Watcher([enriched, dlq]) as watch:
            assert await watch.wait(lambda x: x.count(enriched) >= 2000, timeout=60), w.log()
        assert not producing.done(), "the input was all produced before the outage: not mid-stream"
        await asyncio.to_thread(own_broker.down)
        stopped_at = time.monotonic()
        await asyncio.sleep(DOWN_S)
        assert w.proc.poll() is None, "the worker died with the broker\n" + w.log()
        starting_ms = time.time() * 1000  # an output processed after this came after the outage
        up_s = await asyncio.to_thread(own_broker.up)
        back_at = time.monotonic()
        coords = await producing
        inputs = [(c, v) for c, (_k, v) in zip(coords, txns, strict=True) if c is not None]
        async with rh.Watcher([t[name] for name in rh.FRAUD_OUTPUTS]) as watch:
            acc = await rh.wait_accounted(watch, inputs, enriched, dlq, timeout=120)
            duplicated = rh.duplicated_per_topic(watch.records)
            # The worker may be done by our first poll: time its recovery by when it processed
            # its first record after the broker started again, not by when we saw the output.
            after = [
                int(h[PROCESSED_AT])
                for r in watch.records[enriched]
                if int((h := th.headers_of(r))[PROCESSED_AT]) >= starting_ms
            ]
        restarts = sum(
            v
            for (name, _labels), v in (await th.scrape(w.url)).items()
            if name == "stream_orch_node_restarts_total"
        )
        rh.record_result(
            f"broker stopped {DOWN_S:.0f} s mid-stream ({processing})",
            **acc.figures(),
            duplicated_any_output=sum(duplicated.values()),
            not_acknowledged_by_broker=len(txns) - len(inputs),
            broker_down_s=round(back_at - stopped_at, 1),
            broker_start_s=round(up_s, 1),
            first_output_after_broker_start_s=round((min(after) - starting_ms) / 1000, 1) if after else None,
            worker_survived=w.proc.poll() is None,
            node_restarts=int(restarts),
        )
        assert acc.lost == [], f"{len(acc.lost)} lost\n{w.log()}"
        if processing == "exactly_once":
            assert duplicated == {}, duplicated
        assert after, "nothing was processed after the broker came back\n" + w.log()
        assert w.terminate() == 0
    finally:
        w.stop()
