"""A worker starting under exactly_once on the single local broker logs no
``NotEnoughReplicasError`` warning (issue 20, part 4). The broker verifies every transactional
produce with the transaction coordinator (KIP-890, on by default) and answers aiokafka's
retriable "not yet" as NOT_ENOUGH_REPLICAS; aiokafka retries and warns each time. The worker
keeps those retries at DEBUG and counts them on ``/metrics`` (stream_orch.transport.produce_retries).

Real broker, real worker process: the re-keying topology of test_windows_rekeyed (two nodes, a
transaction per input partition and batch), 3000 scans; every window's count is checked against
a count over the input, so the quiet log is not a worker that did nothing."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests import reliability_harness as rh
from tests.integration.test_windows_aggregate import delete_topics
from tests.integration.test_windows_rekeyed import M, as_input, flush, scans, topology
from tests.topology_harness import free_port, wait_for_group

pytestmark = pytest.mark.integration


async def metrics_text(base: str) -> str:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as s, s.get(base + "/metrics") as r:
        return await r.text()


async def test_an_exactly_once_worker_start_logs_no_not_enough_replicas_warning(tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    path, t, name = topology(tmp_path, suffix, "per_source")
    records = scans(3000, seed=21)
    expected = Counter((r["hub"], r["ts"] - r["ts"] % M) for r in records)
    out = t["hub.counts"]
    try:
        w = rh.worker(path, tmp_path / "worker.log", metrics_port=free_port())
        w.start()
        try:
            for node in ("by_hub", "per_hub"):
                await wait_for_group(f"{name}.{node}")
            async with rh.Watcher([out, t["hub.dlq"]]) as watch:
                await rh.produce_bulk(t["scans"], as_input(records + flush()))
                done = await watch.wait(lambda x: x.count(out) >= len(expected), timeout=90, settle=2.0)
                assert done, (watch.count(out), len(expected), w.log())
            got = [orjson.loads(r.value) for r in watch.records[out]]
            counts = {(r["hub"], r["window_start"]): r["n"] for r in got}
            assert counts == dict(expected) and watch.count(t["hub.dlq"]) == 0
            metrics = await metrics_text(w.url)
            assert w.terminate() == 0
        finally:
            w.stop()
        log = (tmp_path / "worker.log").read_text(errors="replace")
        warnings = [line for line in log.splitlines() if "NotEnoughReplicas" in line]
        assert warnings == [], warnings[:3]
        m = re.search(r'stream_orch_produce_retries_total\{error="NotEnoughReplicasError"\} (\S+)', metrics)
        retried = float(m.group(1)) if m else 0.0
        print(f"NotEnoughReplicasError retries kept at DEBUG: {retried:.0f}")
        assert "# TYPE stream_orch_produce_retries_total counter" in metrics  # counted, also when 0
    finally:
        await delete_topics(suffix)
