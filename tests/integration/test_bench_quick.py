"""The benchmark smoke test CI runs: `python -m benchmarks run --quick` on the two aiokafka baselines."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_quick_run_measures_both_aiokafka_baselines(kafka_bootstrap: str, tmp_path: Path) -> None:
    argv = [
        sys.executable,
        "-m",
        "benchmarks",
        "--bootstrap",
        kafka_bootstrap,
        "run",
        "--quick",
        "--only",
        "aiokafka_batch,aiokafka_send",
        "--out",
        str(tmp_path),
    ]
    started = time.monotonic()
    proc = await asyncio.to_thread(
        subprocess.run, argv, cwd=REPO, capture_output=True, text=True, timeout=100
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert elapsed < 60, f"--quick must stay well under a minute, took {elapsed:.0f} s"

    results = json.loads((tmp_path / "latest.json").read_text())
    assert set(results["contenders"]) == {"aiokafka_batch", "aiokafka_send"}
    for name, entry in results["contenders"].items():
        assert entry["status"] == "ok", (name, entry.get("reason"))
        assert entry["throughput_eps"] > 0, name
        assert entry["cpu_s_per_1k"] > 0, name
        assert entry["peak_rss_mb"] > 0, name
        latency = entry["latency"]["1000"]
        assert latency["received"] > 0 and latency["p50_ms"] > 0, name
        # one round: the run is round 0, carries the load it competed with, and the spread is its value
        run = entry["runs"][0]
        assert run["round"] == 0 and run["before"]["waited_s"] >= 0, name
        assert set(run["window_cores"]) == {"machine", "broker", "harness", "contender", "others"}, name
        assert entry["spread"]["throughput_eps"]["median"] == entry["throughput_eps"], name
    machine = results["machine"]
    assert machine["logical_cores"] and machine["python"] and machine["kafka"]

    table = (tmp_path / "latest.md").read_text()
    assert "| aiokafka_batch |" in table and "| aiokafka_send |" in table
    assert "send per record / batched aiokafka" in table  # a per-round ratio from the one round
    assert (tmp_path / "throughput.png").stat().st_size > 0
