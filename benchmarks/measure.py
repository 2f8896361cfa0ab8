"""The measurements: sustained throughput, CPU per 1,000 events, peak RSS and end-to-end latency.

Throughput is read off the output topics, never from the contender: the harness polls the sum
of the end offsets of the counted topics every ``POLL_S`` and samples the contender's process
tree at the same instant. With j the first poll that sees any output and k the last poll
before the output is complete,

    throughput = (count_k - count_j) / (t_k - t_j)
    cpu per 1k = (cpu_k - cpu_j) / (count_k - count_j) * 1000

so start-up (imports, group join, profile loading) and the ragged end are left out, and both
ends of the interval are real samples (no poll-interval rounding). Forwarding contenders are
counted on their output topic (one record per input); fraud contenders on enriched + DLQ (one
of the two per input that is not a duplicate), so every figure is input events per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import env
from benchmarks.contenders import Contender
from benchmarks.context import ContextSampler, window_context
from benchmarks.data import Dataset, StreamDataset, produce_raw, produce_records
from benchmarks.kafka import (
    OffsetWatcher,
    committed_at_least,
    create_topics,
    delete_topics,
    members_ready,
    sweep_topics,
)
from benchmarks.latency import LatencyProbe, PacedProducer, percentile
from benchmarks.measured_window import group_start, sustained
from benchmarks.procs import HostSampler, TreeSampler, Worker, window_cores
from benchmarks.read_lead import LeadSampler

POLL_S = 0.05
STARTUP_TIMEOUT_S = 90.0  # first output must appear within this (Faust and Quix start slowly)
LATENCY_WARMUP_S = 3.0  # unmeasured seconds at the offered rate before a latency measurement
STALL_TIMEOUT_S = 30.0  # no progress for this long after the first output: the run failed


class RunFailed(RuntimeError):
    """A contender crashed, stalled or timed out; the run is reported as failed, not hung."""


@dataclass
class RunTopics:
    """The topics one contender process set reads and writes, fresh per run."""

    prefix: str
    input: str
    customers: str
    settlements: str = ""  # the `join` kind's second input (BENCH_SETTLEMENTS_TOPIC)

    @property
    def out(self) -> dict[str, str]:
        return {
            env.OUTPUT: f"{self.prefix}.out",
            env.ENRICHED: f"{self.prefix}.enriched",
            env.ALERTS: f"{self.prefix}.alerts",
            env.ACTIONS: f"{self.prefix}.actions",
            env.REVIEW: f"{self.prefix}.review",
            env.APPROVED: f"{self.prefix}.approved",
            env.DLQ: f"{self.prefix}.dlq",
            env.RECONCILED: f"{self.prefix}.reconciled",
            env.MISMATCH: f"{self.prefix}.mismatch",
            env.UNRECONCILED: f"{self.prefix}.unreconciled",
        }

    def outputs(self, kind: str) -> list[str]:
        o = self.out
        if kind in ("forward", "window"):
            return [o[env.OUTPUT], o[env.DLQ]]
        if kind == "join":
            return [o[v] for v in (env.RECONCILED, env.MISMATCH, env.UNRECONCILED, env.DLQ)]
        return [o[v] for v in (env.ENRICHED, env.ALERTS, env.ACTIONS, env.REVIEW, env.APPROVED, env.DLQ)]

    def counted(self, kind: str) -> list[str]:
        o = self.out
        if kind in ("forward", "window"):  # window: one record per closed window
            return [o[env.OUTPUT]]
        if kind == "join":  # one outcome per payment
            return [o[env.RECONCILED], o[env.MISMATCH], o[env.UNRECONCILED]]
        return [o[env.ENRICHED], o[env.DLQ]]

    def latency_topic(self, kind: str) -> str:
        return self.out[env.OUTPUT] if kind == "forward" else self.out[env.ENRICHED]

    def env(self, bootstrap: str, group: str) -> dict[str, str]:
        return {
            env.BOOTSTRAP: bootstrap,
            env.GROUP: group,
            env.TOPOLOGY: group,
            env.INPUT: self.input,
            env.CUSTOMERS: self.customers,
            **({env.SETTLEMENTS: self.settlements} if self.settlements else {}),
            **self.out,
        }


@dataclass
class Context:
    bootstrap: str
    run_id: str
    work_dir: Path  # logs and local state of the contender processes
    keep_topics: bool = False
    created: list[str] = field(default_factory=list)
    broker_pids: list[int] = field(default_factory=list)  # the brokers' CPU, beside the contender's


def _worker_env(ctx: Context, c: Contender, topics: RunTopics, group: str, i: int) -> dict[str, str]:
    state = ctx.work_dir / "state" / f"{group}.{i}"
    state.mkdir(parents=True, exist_ok=True)
    return {
        **topics.env(ctx.bootstrap, group),
        env.STATE_DIR: str(state),
        **c.extra_env,
        "STREAM_ORCH_BOOTSTRAP_SERVERS": ctx.bootstrap,
        "STREAM_ORCH_STATE_DIR": str(state),
    }


def _start(ctx: Context, c: Contender, topics: RunTopics, group: str, workers: int) -> list[Worker]:
    procs: list[Worker] = []
    try:
        for i in range(workers):
            log = ctx.work_dir / "logs" / f"{group}.{i}.log"
            wenv = _worker_env(ctx, c, topics, group, i)
            procs.append(Worker(c.argv(wenv, Path(wenv[env.STATE_DIR])), wenv, log))
    except BaseException:
        for p in procs:
            p.stop()
        raise
    return procs


def _check_alive(procs: list[Worker]) -> None:
    for p in procs:
        if not p.alive():
            raise RunFailed(f"worker exited with code {p.proc.returncode}; log {p.log}:\n{p.log_tail()}")


async def _throughput_phase(
    ctx: Context,
    procs: list[Worker],
    topics: RunTopics,
    c: Contender,
    expected: int,
    started: float,
    events_per_output: float = 1.0,
    members: int = 1,
    group_prefix: str = "",
) -> dict[str, Any]:
    """Poll the counted topics until ``expected`` outputs are there (bounded), then compute.

    ``events_per_output``: input events each counted output stands for, when outputs are not one
    per input (``window``: a closed window per merchant and minute; ``join``: an outcome per
    payment, the input being payments + settlements). The rate and CPU per event are converted
    with it, so every figure is input events; ``outputs_per_s`` keeps the measured rate.

    ``members`` > 1 (several processes in one group): the window starts at the last poll before
    every group of ``group_prefix`` is Stable with that many members. Members join one by one; the
    first works alone and then stops for the rebalance, which on 100k records was up to two thirds
    of a 1.4 s window (README, "Why --processes 2 lost"): start-up of the group, as the single
    process's group join is."""
    kind = c.kind
    total_timeout = STARTUP_TIMEOUT_S + expected / 500 + 30
    samples: list[tuple[float, int, float]] = []
    host: list[tuple[float, float, float]] = []
    sampler = TreeSampler([p.pid for p in procs])
    host_sampler = HostSampler(ctx.broker_pids)
    context_sampler = ContextSampler([p.pid for p in procs])
    context: list[Any] = []
    ready = (
        asyncio.ensure_future(members_ready(ctx.bootstrap, group_prefix, members)) if members > 1 else None
    )
    try:
        async with OffsetWatcher(ctx.bootstrap, topics.counted(kind)) as watcher:
            last_count, last_progress = 0, started
            while True:
                count = await watcher.count()
                now = time.perf_counter()
                samples.append((now, count, sampler.sample()))
                host.append(host_sampler.sample())
                context.append(context_sampler.sample())
                if count >= expected:
                    break
                if count > last_count:
                    last_count, last_progress = count, now
                _check_alive(procs)
                if last_count == 0 and now - started > STARTUP_TIMEOUT_S:
                    log = f"log {procs[0].log}:\n{procs[0].log_tail()}"
                    raise RunFailed(f"no output after {STARTUP_TIMEOUT_S:.0f} s; {log}")
                if last_count and now - last_progress > STALL_TIMEOUT_S:
                    raise RunFailed(f"stalled at {last_count}/{expected} outputs for {STALL_TIMEOUT_S:.0f} s")
                if now - started > total_timeout:
                    raise RunFailed(f"timed out after {total_timeout:.0f} s at {count}/{expected} outputs")
                await asyncio.sleep(POLL_S)
    finally:
        ok = ready is not None and ready.done() and not ready.cancelled() and ready.exception() is None
        ready_at = ready.result() if ready is not None and ok else None
        if ready:
            ready.cancel()
    skip = group_start(samples, ready_at, expected)
    result = sustained(samples[skip:], expected)
    i0, i1 = (i + skip for i in result.pop("window"))
    dt = samples[i1][0] - samples[i0][0]
    result["window_cores"] = window_cores(host[i0], host[i1], samples[i1][2] - samples[i0][2], dt)
    result["context"] = window_context(context[i0 : i1 + 1], dt, result["window_events"])
    if c.transactional:
        await _count_committed(ctx, topics, kind, expected, result)
    if events_per_output != 1.0:
        result["outputs_per_s"] = result["throughput_eps"]
        result["events_per_output"] = events_per_output
        result["throughput_eps"] *= events_per_output
        result["cpu_s_per_1k"] /= events_per_output
        result["cpu_us_by_tenth"] = [round(v / events_per_output, 1) for v in result["cpu_us_by_tenth"]]
        result["window_events"] = round(result["window_events"] * events_per_output)
    first = next(s for s in samples if s[1] > 0)
    if members > 1:  # how the group's start went: outputs per poll, from the first output on
        result["timeline"] = [(round(t - first[0], 3), n) for t, n, _cpu in samples if n > 0]
    result.update(
        workers=len(procs),
        peak_rss_mb=sampler.peak_rss / 2**20,
        startup_s=first[0] - started,
        group_ready_s=None if ready_at is None else ready_at - started,
        total_s=samples[-1][0] - started,
        cpu_total_s=samples[-1][2],
        outputs=samples[-1][1],
    )
    return result


async def _count_committed(
    ctx: Context, topics: RunTopics, kind: str, expected: int, result: dict[str, Any]
) -> None:
    """Take the commit markers out of a transactional contender's figures.

    Every committed transaction leaves a control record (an offset, not a record) in each output
    partition it wrote to. After the window (so reading does not compete with the contender) the
    committed records are counted once; rate and CPU per 1k are scaled by records / offsets
    (markers assumed spread evenly over the run, true for a steady batch size)."""
    try:
        counted = topics.counted(kind)
        records, offsets = await committed_at_least(ctx.bootstrap, counted, expected, timeout_s=30)
    except RuntimeError as exc:
        raise RunFailed(f"read_committed: {exc}") from exc
    share = records / max(offsets, 1)
    result["control_records"] = offsets - records
    result["committed_records"] = records
    result["throughput_eps"] *= share
    result["cpu_s_per_1k"] /= share
    result["cpu_us_by_tenth"] = [round(v / share, 1) for v in result.get("cpu_us_by_tenth", [])]


async def _cleanup(ctx: Context, procs: list[Worker], topics: list[str], prefix: str) -> None:
    for p in procs:
        p.stop()
    if not ctx.keep_topics:
        await delete_topics(ctx.bootstrap, topics)
        await sweep_topics(ctx.bootstrap, prefix)  # what the contender derived itself


async def throughput_run(
    ctx: Context,
    c: Contender,
    input_topic: str,
    customers_topic: str,
    expected: int,
    label: str,
    workers: int = 1,
    settlements_topic: str = "",
    events_per_output: float = 1.0,
    lead_times: dict[str, list[list[int]]] | None = None,
) -> dict[str, Any]:
    """One contender (``workers`` processes, one group) consumes the whole input once.

    ``lead_times`` (a join: per role, per partition, the event time of each offset): the result
    says which side the contender read ahead and by how much (``read_lead``, benchmarks/read_lead.py)."""
    prefix = f"bench.{ctx.run_id}.{c.name}.{label}"
    topics = RunTopics(prefix, input_topic, customers_topic, settlements_topic)
    await create_topics(ctx.bootstrap, topics.outputs(c.kind))
    ctx.created += topics.outputs(c.kind)
    procs = _start(ctx, c, topics, prefix, workers)
    lead = None
    if lead_times is not None:
        roles = {"input": input_topic, "settlements": settlements_topic}
        lead = LeadSampler(ctx.bootstrap, prefix, roles, lead_times)
    sampling = asyncio.ensure_future(lead.run()) if lead is not None else None
    try:
        result = await _throughput_phase(
            ctx, procs, topics, c, expected, time.perf_counter(), events_per_output,
            members=c.members * workers, group_prefix=prefix,
        )  # fmt: skip
        if lead is not None:
            result["read_lead"] = lead.summary()
        return result
    finally:
        if sampling is not None:
            sampling.cancel()
            await asyncio.gather(sampling, return_exceptions=True)
        await _cleanup(ctx, procs, topics.outputs(c.kind), prefix)


# --------------------------------------------------------------------------- latency


async def _latency_phase(
    ctx: Context,
    procs: list[Worker],
    topics: RunTopics,
    kind: str,
    profiles: list[dict[str, Any]],
    rate: int,
    seconds: float,
    drain_s: float,
    warmup: int,
    warmup_s: float = 0.0,
    on_window: Callable[[str], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """Offer ``rate`` events/s and collect latencies, after a warm-up unless the process is warm.

    Warm-up: ``warmup`` records that must come through (the process is consuming), then
    ``warmup_s`` seconds at the offered rate, unmeasured (frameworks are slower in their first
    seconds: lazy imports, caches, first rebalance settling). ``on_window("start"|"end")`` is
    awaited around the measured window (benchmarks/latency_ab.py reads the worker's phases there).
    """
    producer = PacedProducer(ctx.bootstrap, topics.input, profiles, seed=rate)
    probe = LatencyProbe(ctx.bootstrap, topics.latency_topic(kind))
    try:
        await producer.start()
        await probe.start()
        sampler = TreeSampler([procs[0].pid])
        host_sampler = HostSampler(ctx.broker_pids)
        for _ in range(warmup):
            await producer.send("W")
        await producer.flush()
        deadline = time.perf_counter() + STARTUP_TIMEOUT_S
        while probe.warmup_seen < warmup:
            _check_alive(procs)
            if time.perf_counter() > deadline:
                raise RunFailed(
                    f"warm-up records not through after {STARTUP_TIMEOUT_S:.0f} s; log "
                    f"{procs[0].log}:\n{procs[0].log_tail()}"
                )
            await asyncio.sleep(0.05)
        if warmup_s > 0:  # the same rate, unmeasured, straight into the measured phase
            await producer.run(rate, warmup_s, prefix="W")
        if on_window is not None:
            await on_window("start")
        cpu0, host0, t0 = sampler.sample(), host_sampler.sample(), time.perf_counter()
        sent, achieved = await producer.run(rate, seconds)
        deadline = time.perf_counter() + drain_s
        while len(probe.latencies_ms) < sent and time.perf_counter() < deadline:
            _check_alive(procs)
            sampler.sample()
            await asyncio.sleep(0.05)
        cpu1, host1, t1 = sampler.sample(), host_sampler.sample(), time.perf_counter()
        if on_window is not None:
            await on_window("end")
        lat = sorted(probe.latencies_ms)
        received = len(lat)
        return {
            "rate": rate,
            "offered_eps": achieved,
            "sent": sent,
            "received": received,
            # the contender could not keep up: not everything came through within drain_s
            "saturated": received < sent * 0.99,
            # the harness's producer could not offer the rate (CPU shared with the contender)
            "offered_short": achieved < rate * 0.95,
            "p50_ms": percentile(lat, 50),
            "p99_ms": percentile(lat, 99),
            "p999_ms": percentile(lat, 99.9),
            "max_ms": lat[-1] if lat else math.nan,
            "cpu_util": (cpu1 - cpu0) / max(1e-9, t1 - t0),  # cores busy, 1.0 = one core
            "peak_rss_mb": sampler.peak_rss / 2**20,
            # the load the latencies competed with (others: the machine minus broker, harness
            # and contender): on a shared machine, the figure that explains a p99 far off
            "window_cores": window_cores(host0, host1, cpu1 - cpu0, t1 - t0),
        }
    finally:
        with contextlib.suppress(Exception):
            await probe.stop()
        with contextlib.suppress(Exception):
            await producer.stop()


async def latency_run(
    ctx: Context,
    c: Contender,
    customers_topic: str,
    profiles: list[dict[str, Any]],
    rate: int,
    seconds: float,
    drain_s: float = 10.0,
    on_window: Callable[[str], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """Start the contender on an empty topic, warm it up, then offer ``rate`` events/s."""
    prefix = f"bench.{ctx.run_id}.{c.name}.lat{rate}"
    topics = RunTopics(prefix, f"{prefix}.in", customers_topic)
    all_topics = [topics.input, *topics.outputs(c.kind)]
    await create_topics(ctx.bootstrap, all_topics)
    ctx.created += all_topics
    procs = _start(ctx, c, topics, prefix, 1)
    try:
        return await _latency_phase(
            ctx, procs, topics, c.kind, profiles, rate, seconds, drain_s,
            warmup=50, warmup_s=LATENCY_WARMUP_S, on_window=on_window,
        )  # fmt: skip
    finally:
        await _cleanup(ctx, procs, all_topics, prefix)


async def quick_session(
    ctx: Context,
    c: Contender,
    data: Dataset,
    customers_topic: str,
    expected: int,
    rates: list[int],
    seconds: float,
    drain_s: float,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``--quick``: throughput, then latency on the same warm process (one start per contender).

    The contender gets its own copy of the data set (same records) so that the paced records
    can follow it on the same input topic once the throughput phase has consumed it all.
    """
    prefix = f"bench.{ctx.run_id}.{c.name}.quick"
    topics = RunTopics(prefix, f"{prefix}.in", customers_topic)
    all_topics = [topics.input, *topics.outputs(c.kind)]
    await create_topics(ctx.bootstrap, all_topics)
    ctx.created += all_topics
    await produce_records(ctx.bootstrap, topics.input, data.transactions, "account_id")
    procs = _start(ctx, c, topics, prefix, 1)
    try:
        tput = await _throughput_phase(ctx, procs, topics, c, expected, time.perf_counter())
        latency: dict[str, dict[str, Any]] = {}
        for rate in rates:
            try:
                latency[str(rate)] = await _latency_phase(
                    ctx, procs, topics, c.kind, data.customers, rate, seconds, drain_s, warmup=0
                )
            except RunFailed as exc:
                latency[str(rate)] = {"error": str(exc)}
        return tput, latency
    finally:
        await _cleanup(ctx, procs, all_topics, prefix)


async def produce_stream_dataset(bootstrap: str, data: StreamDataset, prefix: str) -> dict[str, str]:
    """Write a `window`/`join` data set into fresh topics ``<prefix>.<role>``; returns role -> topic."""
    topics = {role: f"{prefix}.{role}" for role in data.inputs}
    await create_topics(bootstrap, list(topics.values()))
    for role, items in data.inputs.items():
        await produce_raw(bootstrap, topics[role], items)
    return topics


async def quick_stream_session(ctx: Context, c: Contender, data: StreamDataset) -> dict[str, Any]:
    """``--quick`` for the `window` and `join` kinds: the contender's own copy of the data set, one
    throughput pass (no latency: a window emits when event time closes it, not per record)."""
    prefix = f"bench.{ctx.run_id}.{c.name}.quick"
    inputs = await produce_stream_dataset(ctx.bootstrap, data, f"{prefix}.data")
    ctx.created += list(inputs.values())
    return await throughput_run(
        ctx,
        c,
        inputs["input"],
        "",
        data.expected_outputs,
        "quick",
        settlements_topic=inputs.get("settlements", ""),
        events_per_output=data.events_per_output,
    )
