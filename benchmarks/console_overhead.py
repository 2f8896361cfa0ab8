"""What the console adds to a worker's CPU: one run, windows alternating while records flow at a
steady rate into a fraud worker:

* ``off``      no console;
* ``on``       a console polling the worker every 3 s, as the page does (the figure the issue
               asks for, but the difference of two windows is within this machine's noise);
* ``burst``    a console polling back to back: the worker's CPU above the ``off`` mean, divided
               by the polls, is what one poll costs it; times one poll per 3 s, the overhead;
* ``burst-full`` the same with the whole ``/metrics`` page per poll (what the console asked for
               before it named its series), side by side.

    python -m benchmarks.console_overhead [--rounds 2] [--window-s 15] [--rate 200]

The goal (issue 26) is at most 2 % of the worker's CPU.
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

import aiohttp
import psutil

# the fraud worker harness of the tests is reused (one way to start a worker); its modules
# import their neighbours by bare name
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from benchmarks.machine import cpu_model
from stream_orch.console.html import POLL_S
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

KINDS = ("off", "on", "off", "burst", "off", "burst-full")


async def _feed(topic: str, rate: int, stop: asyncio.Event) -> None:
    n = 0
    while not stop.is_set():
        batch = [txn(f"b{n + i}", "A-1", "C-000123", 10, "EUR", "DE", T0) for i in range(rate)]
        n += rate
        started = time.monotonic()
        await produce_raw(topic, batch)
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))


async def _console(live: Live, stop: asyncio.Event, pause: float) -> int:
    """Polls as the console does (its figures too) until ``stop``; returns the polls made."""
    polls = 0
    while not stop.is_set():
        await live.poll()
        live.figures(next(iter(live.topologies)))
        polls += 1
        await asyncio.sleep(pause)
    return polls


async def _full_pages(url: str, stop: asyncio.Event) -> int:
    """The whole /metrics page, back to back, on one kept-alive connection."""
    polls = 0
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            async with session.get(url + "/metrics") as resp:
                await resp.read()
            polls += 1
            await asyncio.sleep(0)
    return polls


async def main(rounds: int, window_s: float, rate: int) -> None:
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
        await asyncio.sleep(window_s)  # warm up: the first batches, the model's first calls
        cpu: dict[str, list[float]] = {k: [] for k in KINDS}
        polls: dict[str, list[int]] = {k: [] for k in KINDS}
        for r in range(rounds):
            for kind in KINDS:
                stop = asyncio.Event()
                live = Live({spec.topology: Topo(spec)}, Settings(), [worker.url])
                poller = None
                if kind in ("on", "burst"):
                    poller = asyncio.create_task(_console(live, stop, POLL_S if kind == "on" else 0.0))
                elif kind == "burst-full":
                    poller = asyncio.create_task(_full_pages(worker.url, stop))
                load = psutil.getloadavg()[0]
                before = sum(proc.cpu_times()[:2])
                await asyncio.sleep(window_s)
                used = (sum(proc.cpu_times()[:2]) - before) / window_s * 100
                stop.set()
                n = await poller if poller is not None else 0
                await live.close()
                cpu[kind].append(used)
                polls[kind].append(n)
                print(
                    f"round {r + 1} {kind:<10} worker CPU {used:5.1f} %  polls {n:5d}  load {load:.2f}",
                    flush=True,
                )
        stop_feed.set()
        await feed
        off = statistics.mean(cpu["off"])
        noise = statistics.stdev(cpu["off"]) if len(cpu["off"]) > 1 else 0.0
        on = statistics.mean(cpu["on"])
        print(f"machine: {cpu_model()}, {psutil.cpu_count()} cores; {rate} records/s; {window_s:g} s windows")
        print(
            f"worker CPU without console {off:.1f} % of a core (stdev {noise:.1f}), with a console "
            f"polling every {POLL_S:g} s {on:.1f} %: {on - off:+.2f} points"
        )
        for kind in ("burst", "burst-full"):
            n = sum(polls[kind])
            per_poll_ms = sum((c - off) / 100 * window_s for c in cpu[kind]) / n * 1000
            # the off windows' stdev, spread over the polls: how far the per-poll figure can be off
            error_ms = noise / 100 * window_s * len(cpu[kind]) / n * 1000
            at_rate = per_poll_ms / 1000 / POLL_S * 100  # % of a core at one poll per POLL_S
            print(
                f"{kind}: {per_poll_ms:.2f} ms (± {error_ms:.2f}) of worker CPU per poll; "
                f"at one poll per {POLL_S:g} s "
                f"{at_rate:.3f} % of a core = {at_rate / off * 100:.2f} % of the worker's CPU"
            )
    finally:
        worker.stop()
        await delete_topics_with(suffix)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--window-s", type=float, default=15.0)
    parser.add_argument("--rate", type=int, default=200)
    a = parser.parse_args()
    asyncio.run(main(a.rounds, a.window_s, a.rate))
