"""A Kubernetes-style rolling restart under load: three workers of the fraud topology
(exactly_once) read 2,000 transactions/s; one at a time each gets SIGTERM, exits, and starts
again under the same state folder (a StatefulSet pod keeps its name and its volume). Nothing may
be lost or written twice (read_committed view of every output topic, checked against the input),
and every exit is clean. The longest time an input partition produced no output while the input
was flowing is measured (the stall a restart causes) and bounded generously; the figures go to
.state/reliability-results.jsonl. Measured: 1.5 s; run with STREAM_ORCH_LEAVE_GROUP_ON_STOP=true
(workers leave their groups on SIGTERM) it was 17.5 s and this test failed on that bound."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from tests import reliability_harness as rh
from tests.topology_harness import headers_of, wait_for_group

pytestmark = pytest.mark.integration

RATE = 2000
GAP_BOUND_S = 9.0  # below the 10 s session; measured 1.5 s (17.5 s when workers leave on stop)


async def _watch_gaps(watch: rh.Watcher, topic: str, until: asyncio.Task, gaps: dict[int, float]) -> None:
    """Poll ``watch`` until ``until`` is done; per source partition, the longest time between two
    polls that brought it new outputs."""
    last: dict[int, float] = {}
    seen: Counter[int] = Counter()
    while not until.done():
        await watch.poll(0.2)
        now = time.monotonic()
        counts = Counter(int(headers_of(r)["so.src.partition"]) for r in watch.records[topic])
        for partition, n in counts.items():
            if n > seen[partition]:
                if partition in last:
                    gaps[partition] = max(gaps.get(partition, 0.0), now - last[partition])
                last[partition] = now
                seen[partition] = n


async def test_rolling_restart_of_three_workers_under_2k_per_s(tmp_path: Path) -> None:
    path, t, group = rh.fraud_copy(tmp_path, processing="exactly_once")
    workers = [rh.worker(path, tmp_path / f"worker{i}.log") for i in range(3)]
    profiles, txns, expected = rh.crafted(600, 80)  # 48,000 events: 24 s at 2k/s
    enriched, dlq = t["transactions.enriched"], t["transactions.dlq"]
    gaps: dict[int, float] = {}
    try:
        for w in workers:
            w.start()
        await wait_for_group(group)
        await rh.produce_bulk(t["customers"], profiles)
        await asyncio.sleep(2)
        producing = asyncio.create_task(rh.produce_paced(t["transactions"], txns, rate=RATE))
        async with rh.Watcher([t[name] for name in rh.FRAUD_OUTPUTS]) as watch:
            watching = asyncio.create_task(_watch_gaps(watch, enriched, producing, gaps))
            await asyncio.sleep(3)
            exits = []
            for w in workers:
                exits.append(await asyncio.to_thread(w.terminate))
                w.start()
                await asyncio.sleep(4)  # the pod comes back and turns ready before the next goes
            assert not producing.done(), "the restarts ended after the input: not mid-stream"
            coords = await producing
            await watching
            inputs = [(c, v) for c, (_k, v) in zip(coords, txns, strict=True) if c is not None]
            acc = await rh.wait_accounted(watch, inputs, enriched, dlq, timeout=120)
        duplicated = rh.duplicated_per_topic(watch.records)
        per_id, wrong_velocity = rh.wrong_velocities(watch.records[enriched], expected)
        longest = max(gaps.values(), default=0.0)
        rh.record_result(
            "exactly_once: rolling restart of 3 workers under 2k/s (SIGTERM, restart, one at a time)",
            **acc.figures(),
            duplicated_any_output=sum(duplicated.values()),
            longest_partition_gap_s=round(longest, 1),
        )
        assert exits == [0, 0, 0], exits
        assert acc.lost == [], f"{len(acc.lost)} lost, e.g. {acc.lost[:5]}\n{workers[0].log()}"
        assert duplicated == {}, duplicated
        assert sorted(per_id) == sorted(expected), "every txn_id exactly once (dedupe state moved along)"
        assert wrong_velocity == [], wrong_velocity[:10]
        assert longest < GAP_BOUND_S, f"a partition produced nothing for {longest:.1f} s: {gaps}"
        for w in workers:
            assert w.terminate() == 0
    finally:
        for w in workers:
            w.stop()
        await rh.delete_topics(list(t.values()))
