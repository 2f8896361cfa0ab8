"""What the console adds to a worker's CPU: one run, windows alternating with and without a
console polling the worker (every 3 s, as the page does) while records flow at a steady rate.

    python -m benchmarks.console_overhead [--windows 6] [--window-s 20] [--rate 200]

Prints the worker's CPU (% of one core) per window and the difference of the means; the goal
(issue 26) is at most 2 % of the worker's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

# the fraud worker harness of the tests is reused (one way to start a worker); its modules
# import their neighbours by bare name
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from benchmarks.machine import cpu_model
from stream_orch.console.live import Live, Topo
from stream_orch.settings import Settings
from stream_orch.topology.loader import load_topology
from tests.integration.test_fraud_topology import MASK_KEY, T0, txn
from tests.topology_harness import (
    REPO,
    WorkerProcess,
    delete_topics_with,
    free_port,
    isolated_topology,
    produce_raw,
    wait_for_group,
)


async def _feed(topic: str, rate: int, stop: asyncio.Event) -> None:
    n = 0
    while not stop.is_set():
        batch = [txn(f"b{n + i}", "A-1", "C-000123", 10, "EUR", "DE", T0) for i in range(rate)]
        n += rate
        started = time.monotonic()
        await produce_raw(topic, batch)
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))


async def _console(live: Live, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await live.poll()
        live.figures(next(iter(live.topologies)))
        await asyncio.sleep(3.0)


async def main(windows: int, window_s: float, rate: int) -> None:
    tmp = Path(tempfile.mkdtemp())
    suffix = uuid.uuid4().hex[:8]
    path, t = isolated_topology(REPO / "topologies" / "fraud_detection.yaml", tmp, suffix)
    spec = load_topology(path).spec
    worker = WorkerProcess(
        path, tmp / "w.log", env={"STREAM_ORCH_MASK_KEY": MASK_KEY}, metrics_port=free_port()
    )
    worker.start()
    try:
        await wait_for_group(f"{spec.topology}.score_transactions")
        proc = psutil.Process(worker.proc.pid)
        stop_feed = asyncio.Event()
        feed = asyncio.create_task(_feed(t["transactions"], rate, stop_feed))
        results: dict[bool, list[float]] = {False: [], True: []}
        for i in range(windows):
            with_console = i % 2 == 1
            stop = asyncio.Event()
            live = Live({spec.topology: Topo(spec)}, Settings(), [worker.url])
            poller = asyncio.create_task(_console(live, stop)) if with_console else None
            before = sum(proc.cpu_times()[:2])
            await asyncio.sleep(window_s)
            cpu = (sum(proc.cpu_times()[:2]) - before) / window_s * 100
            stop.set()
            if poller is not None:
                await poller
            await live.close()
            results[with_console].append(cpu)
            print(
                f"window {i + 1}: console {'on ' if with_console else 'off'}  worker CPU {cpu:.1f} %",
                flush=True,
            )
        stop_feed.set()
        await feed
        off, on = statistics.mean(results[False]), statistics.mean(results[True])
        print(f"machine: {cpu_model()}; {rate} records/s; {window_s:g} s windows")
        print(
            f"worker CPU without console {off:.1f} %, with {on:.1f} %: +{on - off:.2f} points "
            f"({(on - off) / off * 100 if off else 0:.1f} % of the worker's CPU)"
        )
    finally:
        worker.stop()
        await delete_topics_with(suffix)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=6)
    parser.add_argument("--window-s", type=float, default=20.0)
    parser.add_argument("--rate", type=int, default=200)
    a = parser.parse_args()
    asyncio.run(main(a.windows, a.window_s, a.rate))
