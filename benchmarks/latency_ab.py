"""Latency A/B: one contender's end-to-end latency at a fixed rate, from two source trees in
alternating runs, each with the worker's per-phase histograms over the measured window.

    python -m benchmarks.latency_ab --contender engine_fraud_eos --rate 5000 --rounds 3 \\
        --tree before=/tmp/base --tree after=. [--seconds 10] [--out ab.json]

Each run is the full run's latency phase (``measure.latency_run``: fresh topics and group, 50
warm-up records, 3 s unmeasured at the rate, then ``--seconds`` measured), with the worker's
``/metrics`` read at the start and the end of the measured window: the difference of the
``stream_orch_batch_phase_seconds`` buckets is what the window's batches did (warm-up excluded).
Beside the harness's read_committed probe a second probe reads the same output
``read_uncommitted``: a record is readable there once written, so the two probes' percentiles
apart are what the transaction adds after the write (offsets, commit, markers: its visibility to
a read_committed reader). Trees alternate (A B, B A, A B ...), so a load change that slows one run
slows its neighbour too; every run logs the cores other processes used (``window_cores``), and
``uptime``'s load average is printed at the start and end. A tree is a checkout of this repository:
its ``stream_orch`` is the one the worker imports (the harness puts the tree first on the
worker's PYTHONPATH). ``--together`` runs the trees' workers at the same time instead, each at the
rate on its own topics and metrics port: a pair then meets the same load from others (each is
also load for the other; its ``others`` cores include the other worker).
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import measure, procs
from benchmarks.contenders import BY_NAME
from benchmarks.contenders import engine as engine_entry
from benchmarks.data import make_dataset, produce_records
from benchmarks.kafka import create_topics, delete_topics, sweep_topics
from benchmarks.latency import LatencyProbe, percentile
from benchmarks.measure import Context, RunTopics, latency_run
from benchmarks.phases import quantile, scrape
from benchmarks.procs import wait_quiet

Buckets = dict[tuple[str, str], list[tuple[float, float]]]
# the tree and metrics port of the run in this task (--together runs several at once)
_RUN: contextvars.ContextVar[tuple[Path, int]] = contextvars.ContextVar("run")
_start = measure._start


def _start_in_tree(*args: Any, **kwargs: Any) -> Any:
    """measure._start with this task's tree first on the worker's PYTHONPATH and its own port."""
    tree, port = _RUN.get()
    procs.REPO = tree  # read when the worker process is made, inside this call
    engine_entry.ENV["STREAM_ORCH_METRICS_PORT"] = str(port)
    return _start(*args, **kwargs)


measure._start = _start_in_tree


def window(before: Buckets | None, after: Buckets | None) -> Buckets:
    """The buckets of what happened between two scrapes of one worker (cumulative counts)."""
    if not after:
        return {}
    out: Buckets = {}
    for key, buckets in after.items():
        old = dict((before or {}).get(key, []))
        out[key] = [(le, count - old.get(le, 0.0)) for le, count in buckets]
    return out


def phase_table(buckets: Buckets) -> dict[str, dict[str, float]]:
    """Per phase of the main node (the one with the most batches): batches, p50, p99 in ms."""
    nodes: dict[str, float] = {}
    for (node, _), b in buckets.items():
        nodes[node] = max(nodes.get(node, 0.0), max((c for _, c in b), default=0.0))
    if not nodes:
        return {}
    main = max(nodes, key=lambda n: nodes[n])
    return {
        phase: {
            "batches": max(c for _, c in b),
            "p50_ms": round(quantile(b, 0.5) * 1000, 1),
            "p99_ms": round(quantile(b, 0.99) * 1000, 1),
        }
        for (node, phase), b in sorted(buckets.items())
        if node == main and max((c for _, c in b), default=0.0) > 0
    }


class Window:
    """on_window for latency_run: phases scraped and a read_uncommitted probe around the window."""

    def __init__(self, bootstrap: str, port: int, topic_of: Any) -> None:
        self.bootstrap, self.port, self.topic_of = bootstrap, port, topic_of
        self.scrapes: dict[str, Buckets | None] = {}
        self.uncommitted: LatencyProbe | None = None

    async def __call__(self, stage: str) -> None:
        self.scrapes[stage] = await asyncio.to_thread(scrape, self.port)
        if stage == "start":
            self.uncommitted = LatencyProbe(
                self.bootstrap, self.topic_of(), isolation_level="read_uncommitted"
            )
            await self.uncommitted.start()
        elif self.uncommitted is not None:
            await asyncio.sleep(0.5)  # the last records' turn in its fetch loop
            await self.uncommitted.stop()


async def one_run(
    args: argparse.Namespace, tree: Path, profiles: list[dict[str, Any]], customers: str, port: int
) -> dict[str, Any]:
    contender = BY_NAME[args.contender]
    run_id = datetime.now(UTC).strftime("%H%M%S") + uuid.uuid4().hex[:4]
    ctx = Context(args.bootstrap, run_id, Path(tempfile.mkdtemp(prefix=f"bench-ab-{run_id}-")))
    ctx.broker_pids = args.broker_pids
    prefix = f"bench.{run_id}.{contender.name}.lat{args.rate}"
    topic = RunTopics(prefix, f"{prefix}.in", customers).latency_topic(contender.kind)
    on_window = Window(args.bootstrap, port, lambda: topic)
    _RUN.set((tree, port))  # the worker imports this tree's stream_orch (first on its PYTHONPATH)
    await wait_quiet(args.broker_pids, timeout_s=10.0)
    try:
        lat = await latency_run(
            ctx, contender, customers, profiles, args.rate, args.seconds, on_window=on_window
        )
    finally:
        await sweep_topics(args.bootstrap, f"bench.{run_id}.")
    unc = sorted(on_window.uncommitted.latencies_ms) if on_window.uncommitted else []
    phases = phase_table(window(on_window.scrapes.get("start"), on_window.scrapes.get("end")))
    return {
        "p50_ms": round(lat["p50_ms"], 1),
        "p99_ms": round(lat["p99_ms"], 1),
        "uncommitted_p50_ms": round(percentile(unc, 50), 1),
        "uncommitted_p99_ms": round(percentile(unc, 99), 1),
        "received": lat["received"],
        "sent": lat["sent"],
        "offered_eps": round(lat["offered_eps"]),
        "others_cores": lat["window_cores"].get("others"),
        "broker_cores": lat["window_cores"].get("broker"),
        "contender_cores": lat["window_cores"].get("contender"),
        "phases": phases,
    }


def _line(name: str, r: dict[str, Any]) -> str:
    ph = " ".join(f"{p}={v['p50_ms']}/{v['p99_ms']}" for p, v in r["phases"].items())
    return (
        f"{name:8} p50/p99 {r['p50_ms']:6.1f}/{r['p99_ms']:6.1f} ms  uncommitted {r['uncommitted_p50_ms']}/"
        f"{r['uncommitted_p99_ms']}  others {r['others_cores']} broker {r['broker_cores']} "
        f"worker {r['contender_cores']} | {ph}"
    )


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    engine_entry.ENV["STREAM_ORCH_METRICS_PORT"] = str(args.port)
    engine_entry.ENV["STREAM_ORCH_LOG_LEVEL"] = "WARNING"
    trees = [(name, Path(path).resolve()) for name, path in (t.split("=", 1) for t in args.tree)]
    data = make_dataset(max(1000, args.customers * 40))
    setup = f"bench.ab{uuid.uuid4().hex[:6]}."
    customers = f"{setup}customers"
    await create_topics(args.bootstrap, [customers], compact=[customers])
    await produce_records(args.bootstrap, customers, data.customers, "customer_id")
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in trees}
    print(f"load average at start: {os.getloadavg()}", flush=True)
    try:
        for rnd in range(args.rounds):
            order = trees if rnd % 2 == 0 else trees[::-1]
            if args.together:  # at once, each on its own topics: the same load for all
                runs = [
                    one_run(args, t, data.customers, customers, args.port + i)
                    for i, (_, t) in enumerate(order)
                ]
                done = await asyncio.gather(*runs)
            else:
                done = [await one_run(args, t, data.customers, customers, args.port) for _, t in order]
            for (name, _), r in zip(order, done, strict=True):
                r["round"] = rnd
                results[name].append(r)
                print(f"[{time.strftime('%H:%M:%S')}] round {rnd + 1} " + _line(name, r), flush=True)
    finally:
        await delete_topics(args.bootstrap, [customers])
    print(f"load average at end: {os.getloadavg()}")
    for name, runs in results.items():
        if runs:
            print(
                f"{name:8} median p50 {statistics.median(r['p50_ms'] for r in runs):.1f} ms, "
                f"median p99 {statistics.median(r['p99_ms'] for r in runs):.1f} ms over {len(runs)} runs"
            )
    trees_out = {n: str(t) for n, t in trees}
    return {"contender": args.contender, "rate": args.rate, "trees": trees_out, "runs": results}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--contender", default="engine_fraud_eos")
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tree", action="append", help="NAME=PATH (a checkout); default: this tree")
    parser.add_argument("--port", type=int, default=9464, help="the worker's metrics port")
    parser.add_argument("--customers", type=int, default=2500)
    parser.add_argument(
        "--together",
        action="store_true",
        help="run the trees' workers at the same time (each at --rate on its own topics): a pair "
        "meets the same load from others, and each is load for the other",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.tree = args.tree or [f"this={procs.REPO}"]
    from benchmarks import machine

    args.broker_pids = machine.info(args.bootstrap)["broker_pids"]
    out = asyncio.run(main_async(args))
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
