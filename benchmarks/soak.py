"""``python -m benchmarks soak``: a fixed rate for many minutes, RSS recorded over time.

Growth is measured against the RSS once the worker has warmed up (caches, state, allocator
pools), not against its start-up size: median RSS of the first 30 s after the warm-up
against the median of the last 30 s.

The durable-state target (issue 11) is the fraud topology as shipped: ``--contender
engine_fraud_eos`` (processing exactly_once as in the file, tables written by steps on RocksDB,
the dedupe step's 24 h horizon). Every event carries a fresh txn_id and the send instant as
event time, so every id of the run stays inside the horizon and the dedupe store only grows.
The result records what ran (processing, each table's store, each dedupe horizon, read from
the worker's rendered topology) and the state folder's size on disk at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import machine
from benchmarks.data import make_customers, produce_records
from benchmarks.kafka import OffsetWatcher, create_topics, delete_topics, sweep_topics
from benchmarks.latency import PacedProducer
from benchmarks.measure import RunFailed, _check_alive, _start
from benchmarks.procs import TreeSampler
from benchmarks.runner import log, one_contender

SAMPLE_S = 2.0


def state_config(state_dir: Path) -> dict[str, Any]:
    """What the worker ran with: processing, each table's store, each dedupe step's horizon."""
    from stream_orch.topology.loader import load_topology

    rendered = next(state_dir.glob("*.rendered.yaml"), None)
    if rendered is None:
        return {}
    spec = load_topology(rendered, env=os.environ).spec
    return {
        "processing": spec.processing,
        "stores": {name: ("global" if t.global_ else t.store) for name, t in spec.tables.items()},
        "dedupe_horizons_ms": {
            f"{node}.{s.table}": s.horizon
            for node, n in spec.nodes.items()
            for s in n.steps
            if getattr(s, "step", None) == "dedupe"
        },
    }


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def growth(series: list[tuple[float, float]], warmup_s: float, window_s: float = 30.0) -> dict[str, float]:
    """RSS growth % between the window after warm-up and the last window (series of (t, MB))."""
    end = series[-1][0]
    base = [mb for t, mb in series if warmup_s <= t < warmup_s + window_s] or [series[0][1]]
    last = [mb for t, mb in series if t > end - window_s] or [series[-1][1]]
    b, e = statistics.median(base), statistics.median(last)
    return {
        "rss_base_mb": b,
        "rss_end_mb": e,
        "rss_max_mb": max(mb for _, mb in series),
        "rss_growth_pct": (e - b) / b * 100 if b else 0.0,
    }


async def soak(name: str, minutes: float, rate: int, out: Path, bootstrap: str) -> dict[str, Any] | None:
    setup = one_contender(name, bootstrap, "soak")
    if setup is None:
        return None
    c, ctx, topics, all_topics = setup
    info = machine.info(bootstrap)
    seconds = minutes * 60
    warmup_s = min(60.0, seconds * 0.2)
    series: list[tuple[float, float]] = []
    counts: list[tuple[float, int]] = []
    await create_topics(bootstrap, all_topics, compact=[topics.customers])
    profiles = make_customers(5000)
    procs = []
    try:
        await produce_records(bootstrap, topics.customers, profiles, "customer_id")
        procs = _start(ctx, c, topics, topics.prefix, 1)
        state_dir = ctx.work_dir / "state" / f"{topics.prefix}.0"  # as measure._worker_env names it
        state = state_config(state_dir)
        log(f"soak: state {state}")
        sampler = TreeSampler([procs[0].pid])
        producer = PacedProducer(bootstrap, topics.input, profiles)
        await producer.start()
        started = time.perf_counter()

        async def watch() -> None:
            async with OffsetWatcher(bootstrap, topics.counted(c.kind)) as watcher:
                while True:
                    _check_alive(procs)
                    sampler.sample()
                    t = time.perf_counter() - started
                    series.append((t, sampler.rss / 2**20))
                    counts.append((t, await watcher.count()))
                    if len(series) % 30 == 0:  # a run cut short (broker restarted) keeps its series
                        _partial(out, name, minutes, rate, state, series, counts, warmup_s)
                    await asyncio.sleep(SAMPLE_S)

        watcher_task = asyncio.create_task(watch())
        try:
            log(f"soak: {name} at {rate}/s for {minutes:g} min")
            sent, achieved = await producer.run(rate, seconds, prefix="L")
        finally:
            watcher_task.cancel()
            await asyncio.gather(watcher_task, return_exceptions=True)
            await producer.stop()
        if watcher_task.done() and not watcher_task.cancelled() and watcher_task.exception():
            raise watcher_task.exception()  # type: ignore[misc]
        state["state_dir_bytes_end"] = dir_bytes(state_dir)
    except RunFailed as exc:
        log(f"soak: FAILED — {exc}")
        raise SystemExit(1) from None
    finally:
        for p in procs:
            p.stop()
        await delete_topics(bootstrap, all_topics)
        await sweep_topics(bootstrap, topics.prefix)  # what the contender derived itself
    info["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    result = {
        "contender": name,
        "minutes": minutes,
        "rate": rate,
        "offered_eps": achieved,
        "sent": sent,
        "outputs": counts[-1][1] if counts else 0,
        "warmup_s": warmup_s,
        "state": state,
        "machine": info,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **growth(series, warmup_s),
        "rss_mb": series,
        "output_count": counts,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak-latest.json").write_text(json.dumps(result, indent=1))
    _chart(result, out / "soak.png")
    log(f"soak: {result['outputs']:,} outputs counted at the last sample, {sent:,} records sent")
    log(
        f"soak: RSS {result['rss_base_mb']:.0f} → {result['rss_end_mb']:.0f} MB "
        f"({result['rss_growth_pct']:+.1f} %), max {result['rss_max_mb']:.0f} MB; "
        f"wrote {out}/soak-latest.json"
    )
    return result


def _partial(
    out: Path,
    name: str,
    minutes: float,
    rate: int,
    state: dict[str, Any],
    series: list[tuple[float, float]],
    counts: list[tuple[float, int]],
    warmup_s: float,
) -> None:
    """The series so far, in soak-partial.json (replaced every minute; the finished run writes
    soak-latest.json)."""
    partial = {
        "contender": name,
        "minutes_planned": minutes,
        "minutes_done": round(series[-1][0] / 60, 2),
        "rate": rate,
        "state": state,
        "warmup_s": warmup_s,
        **(growth(series, warmup_s) if series[-1][0] > warmup_s + 30 else {}),
        "rss_mb": series,
        "output_count": counts,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak-partial.json").write_text(json.dumps(partial, indent=1))


def _chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot([t / 60 for t, _ in result["rss_mb"]], [mb for _, mb in result["rss_mb"]])
    ax.axvline(result["warmup_s"] / 60, color="grey", linestyle=":", label="end of warm-up")
    ax.set_xlabel("minutes")
    ax.set_ylabel("RSS MB (process tree)")
    ax.set_title(
        f"soak: {result['contender']} at {result['rate']:,}/s — growth {result['rss_growth_pct']:+.1f} %"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
