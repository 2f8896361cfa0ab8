"""`stream-orch run --processes 2` on the real broker: both members work, a member killed with
kill -9 is restarted and takes its partitions back (exactly_once: nothing lost, nothing twice,
velocity state equal to the reference from the input), and SIGTERM to the supervisor drains both
and leaves no process behind."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import psutil
import pytest

from tests import reliability_harness as rh
from tests.topology_harness import free_port, scrape, summed_by, wait_for_group

pytestmark = pytest.mark.integration


async def _status(url: str) -> dict:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s,
        s.get(url + "/status") as r,
    ):
        return await r.json()


async def _wait_ready(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        while time.monotonic() < deadline:
            try:
                async with s.get(url + "/ready") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
    raise AssertionError(f"{url}/ready never answered 200")


async def test_two_processes_kill_one_member_exactly_once(tmp_path: Path) -> None:
    path, t, group = rh.fraud_copy(tmp_path, processing="exactly_once")
    sup = rh.worker(path, tmp_path / "supervisor.log", metrics_port=free_port())
    profiles, txns, expected = rh.crafted(400, 50)
    enriched, dlq = t["transactions.enriched"], t["transactions.dlq"]
    try:
        sup.start("--processes", "2")
        await _wait_ready(sup.url)
        await wait_for_group(group)
        await rh.produce_bulk(t["customers"], profiles)
        clean = t["customers.clean"]
        assert await rh.global_table_loaded([sup.url], clean, len(profiles), members=2), sup.log()
        producing = asyncio.create_task(rh.produce_paced(t["transactions"], txns, rate=2000))
        async with rh.Watcher([t[name] for name in rh.FRAUD_OUTPUTS]) as watch:
            assert await watch.wait(lambda x: x.count(enriched) >= len(expected) * 0.3, timeout=60), sup.log()
            assert not producing.done(), "killed after the input was all produced: not mid-stream"
            before = await _status(sup.url)
            victim = before["members"][0]["pid"]
            psutil.Process(victim).kill()
            coords = await producing
            inputs = [(c, v) for c, (_k, v) in zip(coords, txns, strict=True) if c is not None]
            acc = await rh.wait_accounted(watch, inputs, enriched, dlq, timeout=90)
            await watch.poll(2.0)  # a late second copy would show up now
        after = await _status(sup.url)
        samples = await scrape(sup.url)
        found = rh.verdict(watch.records, enriched, expected)
        rh.record_result(
            "--processes 2, exactly_once: kill -9 one member under load (2k/s)",
            **acc.figures(),
            **found.figures(),
        )
        found.assert_exactly_once(acc, expected, sup.log())
        restarted = after["members"][0]
        assert restarted["pid"] not in (None, victim) and restarted["restarts"] == 1, after
        assert samples[("stream_orch_supervisor_member_restarts_total", (("member", "0"),))] == 1.0
        consumed = {m: v for (m,), v in summed_by(samples, "stream_orch_events_in_total", "member").items()}
        assert consumed.get("1", 0) > 0 and consumed.get("0", 0) > 0, consumed  # both members did work
        members = [m["pid"] for m in after["members"]]
        assert sup.proc is not None
        children = psutil.Process(sup.proc.pid).children(recursive=True)
        assert sup.terminate() == 0, sup.log()
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert alive == [], f"left running: {alive}"
        assert {p.pid for p in gone} >= set(members)
    finally:
        sup.stop()
