"""A rolling restart of three workers (SIGTERM one at a time and start it again, as Kubernetes
does) under 2k records/s, exactly_once: nothing lost, nothing twice, velocities equal to the
reference from the input, and no stall of a session timeout. Like a Kubernetes rolling update, the
next worker is stopped only once the restarted one answers /ready (on this shared machine a start
can take longer than the pause between restarts; without the gate two workers were down at once
and the third took all partitions). End-to-end latency (input record's
create time until a read_committed reader sees its enriched record) goes to the reliability
report, with and without leaving the group on a clean stop (STREAM_ORCH_LEAVE_GROUP_ON_STOP)."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path

import aiohttp
import pytest

from tests import reliability_harness as rh
from tests.topology_harness import WorkerProcess, free_port, wait_for_group

pytestmark = pytest.mark.integration


class _TimedWatcher(rh.Watcher):
    """A Watcher that notes when each record became visible to it (wall clock, ms), to within one
    short fetch: it polls in slices of 50 ms."""

    def __init__(self, topics: list[str]) -> None:
        super().__init__(topics)
        self.seen_ms: dict[int, float] = {}

    async def poll(self, seconds: float = 0.3) -> None:
        deadline = time.monotonic() + seconds
        while True:
            before = {t: len(r) for t, r in self.records.items()}
            await super().poll(0.05)
            now = time.time() * 1000
            for topic, records in self.records.items():
                for r in records[before[topic] :]:
                    self.seen_ms[id(r)] = now
            if time.monotonic() >= deadline:
                return


async def _ready(w: WorkerProcess, watch: _TimedWatcher, timeout: float = 60.0) -> bool:
    """Whether ``w`` answers /ready with 200 within ``timeout``; the watcher reads (and times)
    meanwhile."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(w.url + "/ready") as resp:
                    if resp.status == 200:
                        return True
            except (aiohttp.ClientError, TimeoutError, OSError):
                pass  # not listening yet
            await watch.poll(0.1)
    return False


def _latencies_ms(watch: _TimedWatcher, input_topic: str, enriched: str) -> list[float]:
    created = {rh.txn_id_of(r.value): r.timestamp for r in watch.records[input_topic]}
    out = []
    for r in watch.records[enriched]:
        tid = rh.txn_id_of(r.value)
        if tid in created:
            out.append(watch.seen_ms[id(r)] - created[tid])
    return out


# The suite runs the default (leave on stop); SO_ROLLING_COMPARE=1 adds the other setting and the
# same load with no restart at all (the machine's own latency under it), for the comparison in
# docs/reliability.md (each run takes about 80 s).
_MODES = ["leave", "stay", "none"] if os.environ.get("SO_ROLLING_COMPARE") == "1" else ["leave"]


@pytest.mark.parametrize("mode", _MODES)
async def test_rolling_restart_of_three_workers_exactly_once(tmp_path: Path, mode: str) -> None:
    path, t, group = rh.fraud_copy(tmp_path, processing="exactly_once")
    workers = [rh.worker(path, tmp_path / f"worker{i}.log", metrics_port=free_port()) for i in range(3)]
    for w in workers:
        w.env["STREAM_ORCH_LEAVE_GROUP_ON_STOP"] = "true" if mode == "leave" else "false"
    profiles, txns, expected = rh.crafted(400, 200)  # 40 s of input: three gated restarts fit in it
    enriched, dlq = t["transactions.enriched"], t["transactions.dlq"]
    try:
        for w in workers:
            w.start()
        await wait_for_group(group)
        await rh.produce_bulk(t["customers"], profiles)
        clean = t["customers.clean"]
        assert await rh.global_table_loaded([w.url for w in workers], clean, len(profiles)), workers[0].log()
        producing = asyncio.create_task(rh.produce_paced(t["transactions"], txns, rate=2000))
        async with _TimedWatcher([t["transactions"], *(t[name] for name in rh.FRAUD_OUTPUTS)]) as watch:
            for w in workers:
                await watch.poll(3.0)
                if mode == "none":
                    continue
                # stopped in a thread, so the watcher keeps reading (and timing) meanwhile
                stopping = asyncio.create_task(asyncio.to_thread(w.terminate))
                while not stopping.done():
                    await watch.poll(0.1)
                assert stopping.result() == 0, w.log()
                w.start()
                assert await _ready(w, watch), w.log()  # as a rolling update does, before the next one
            assert not producing.done(), "the restarts ended after the input: not under load"
            while not producing.done():  # read on meanwhile: a record is timed when first polled
                await watch.poll(0.1)
            coords = await producing
            # every output seen before the accounting, whose CPU would delay the polls it times
            await watch.wait(lambda x: x.count(enriched) >= len(expected), timeout=120)
            inputs = [(c, v) for c, (_k, v) in zip(coords, txns, strict=True) if c is not None]
            acc = await rh.wait_accounted(watch, inputs, enriched, dlq, timeout=120)
            await watch.poll(2.0)  # a late second copy would show up now
        outputs = {k: v for k, v in watch.records.items() if k != t["transactions"]}
        found = rh.verdict(outputs, enriched, expected)
        lat = sorted(_latencies_ms(watch, t["transactions"], enriched))
        p99 = lat[int(len(lat) * 0.99)] if lat else None
        rh.record_result(
            f"rolling restart of 3 workers at 2k/s, exactly_once, {mode} on stop"
            if mode != "none"
            else "3 workers at 2k/s, exactly_once, no restart (the rolling restart's baseline)",
            **acc.figures(),
            **found.figures(),
            p50_ms=round(statistics.median(lat)) if lat else None,
            p99_ms=round(p99) if p99 is not None else None,
            max_ms=round(lat[-1]) if lat else None,
        )
        found.assert_exactly_once(acc, expected)
        print(f"{mode}: p50 {statistics.median(lat):.0f} ms, p99 {p99:.0f} ms, max {lat[-1]:.0f} ms")
    finally:
        for w in workers:
            w.stop()
