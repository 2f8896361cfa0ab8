"""``python -m benchmarks run``: data once, then every contender side by side on it."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import machine, report, rounds
from benchmarks.contenders import BY_NAME, CONTENDERS, Contender
from benchmarks.context import cpu_probe
from benchmarks.data import (
    Dataset,
    StreamDataset,
    make_dataset,
    make_join_dataset,
    make_window_dataset,
    produce_records,
)
from benchmarks.kafka import PARTITIONS, create_topics, delete_topics, sweep_topics
from benchmarks.measure import (
    Context,
    RunFailed,
    RunTopics,
    latency_run,
    produce_stream_dataset,
    quick_session,
    quick_stream_session,
    throughput_run,
)
from benchmarks.procs import wait_quiet
from benchmarks.read_lead import times_by_partition


@dataclass
class RunConfig:
    quick: bool
    records: int
    runs: int
    rates: list[int]
    latency_seconds: float
    workers: list[int]
    only: list[str] | None
    out: Path
    bootstrap: str
    keep_topics: bool = False
    latency: bool = True
    scaling: bool = True
    warmup_rounds: int = 1  # rounds run first and discarded (see rounds.py)
    quiet_timeout_s: float = 20.0  # longest wait for an idle broker/machine before a measurement


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def check_local(bootstrap: str) -> None:
    """Benchmarks only ever target a broker on this machine."""
    for address in bootstrap.split(","):  # one broker, or a local cluster (kafka up --brokers 3)
        if address.rsplit(":", 1)[0] not in ("127.0.0.1", "localhost"):
            raise SystemExit(
                f"benchmarks: refusing non-local bootstrap {bootstrap!r}; use 127.0.0.1:PORT[,...]"
            )


def one_contender(
    name: str, bootstrap: str, label: str, *, streams: bool = False
) -> tuple[Contender, Context, RunTopics, list[str]] | None:
    """Set up a single-contender run (profile, soak): its context, topics and all topic names;
    None, after saying why, when the contender cannot run here. ``streams``: the caller takes the
    `window` and `join` contenders too (it writes their data set, which has its own inputs)."""
    check_local(bootstrap)
    c = BY_NAME.get(name)
    if c is None:
        raise SystemExit(f"benchmarks: unknown contender {name!r}; known: {sorted(BY_NAME)}")
    if c.kind in STREAM_KINDS and not streams:
        raise SystemExit(f"benchmarks: {name} is a {c.kind} contender; soak and profile take the others")
    reason = c.unavailable()
    if reason:
        log(f"{name}: skipped — {reason}")
        return None
    run_id = datetime.now(UTC).strftime("%H%M%S") + uuid.uuid4().hex[:4]
    ctx = Context(bootstrap, run_id, Path(tempfile.mkdtemp(prefix=f"bench-{label}-{run_id}-")))
    prefix = f"bench.{run_id}.{label}.{name}"
    settlements = f"{prefix}.settlements" if c.kind == "join" else ""
    topics = RunTopics(prefix, f"{prefix}.in", f"{prefix}.customers", settlements)
    return c, ctx, topics, [topics.input, topics.customers, *topics.outputs(c.kind)]


def select(only: list[str] | None) -> tuple[list[Contender], dict[str, str]]:
    """The contenders to run, and the reason each of the others is skipped."""
    names = {c.name for c in CONTENDERS}
    if only:
        unknown = set(only) - names
        if unknown:
            raise SystemExit(f"benchmarks: unknown contender(s) {sorted(unknown)}; known: {sorted(names)}")
    chosen, skipped = [], {}
    for c in CONTENDERS:
        if only and c.name not in only:
            continue
        reason = c.unavailable()
        if reason:
            skipped[c.name] = reason
            log(f"{c.name}: skipped — {reason}")
        else:
            chosen.append(c)
    return chosen, skipped


# kinds with their own data set (benchmarks.data.make_window_dataset / make_join_dataset): throughput
# and CPU per input event only; no latency (a window emits when event time closes it) and no scaling
STREAM_KINDS = ("window", "join")


def make_stream_datasets(kinds: set[str], records: int) -> dict[str, StreamDataset]:
    """The `window` data set has ``records`` transactions; the `join` one ``records // 2`` payments
    (with their settlements about ``records`` events)."""
    out: dict[str, StreamDataset] = {}
    if "window" in kinds:
        out["window"] = make_window_dataset(records)
    if "join" in kinds:
        out["join"] = make_join_dataset(max(100, records // 2))
    return out


SPREAD_KEYS = ("throughput_eps", "cpu_s_per_1k", "peak_rss_mb")


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "throughput_eps": statistics.median(r["throughput_eps"] for r in runs),
        "cpu_s_per_1k": statistics.median(r["cpu_s_per_1k"] for r in runs),
        "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
        "startup_s": statistics.median(r["startup_s"] for r in runs),
    }


def _summarise(entry: dict[str, Any]) -> None:
    good = [r for r in entry["runs"] if "error" not in r]
    if good:
        entry.update(_median_run(good))
        entry["spread"] = {k: rounds.spread(r[k] for r in good) for k in SPREAD_KEYS}
    else:
        entry.update(status="failed", reason=entry["runs"][0]["error"] if entry["runs"] else "no run")


def _log_latency(name: str, rate: int, lat: dict[str, Any]) -> None:
    if "error" in lat:
        log(f"{name} latency @ {rate}/s: FAILED — {lat['error'].splitlines()[0]}")
        return
    flags = ", saturated" if lat["saturated"] else ""
    if lat["offered_short"]:
        flags += f", offered only {lat['offered_eps']:.0f}/s"
    cores = lat.get("window_cores", {})
    log(
        f"{name} latency @ {rate:,}/s: p50 {lat['p50_ms']:.1f} p99 {lat['p99_ms']:.1f} "
        f"p99.9 {lat['p999_ms']:.1f} ms ({lat['received']}/{lat['sent']} received{flags}); cores in "
        f"the window: contender {cores.get('contender', 0):.2f}, broker {cores.get('broker', 0):.2f}, "
        f"others {cores.get('others', 0):.2f}"
    )


def _log_run(name: str, r: dict[str, Any], what: str) -> None:
    cores = r.get("window_cores", {})
    tenths = r.get("cpu_us_by_tenth") or []
    along = f" (µs per event, first tenth {tenths[0]:.1f}, last {tenths[-1]:.1f})" if tenths else ""
    log(
        f"{name} {what}: {r['throughput_eps']:,.0f} ev/s, {r['cpu_s_per_1k']:.3f} CPU s/1k{along}, "
        f"peak RSS {r['peak_rss_mb']:.0f} MB, first output after {r['startup_s']:.1f} s; cores in the "
        f"window: contender {cores.get('contender', 0):.2f}, broker {cores.get('broker', 0):.2f}, "
        f"others {cores.get('others', 0):.2f}"
        + (f"; read ahead: {_lead(r['read_lead'])}" if "read_lead" in r else "")
    )


def _lead(lead: dict[str, Any]) -> str:
    if not lead.get("samples"):
        return "not seen"
    return (
        f"{lead['led']} by {abs(lead['median_s']):,.0f} s (median; p90 {lead['p90_abs_s']:,.0f}, "
        f"max {lead['max_abs_s']:,.0f} s, payments ahead in {lead['payments_ahead_share']:.0%})"
    )


async def _quiet(ctx: Context, timeout_s: float) -> dict[str, Any]:
    quiet = await wait_quiet(ctx.broker_pids, timeout_s=timeout_s, others_timeout_s=min(5.0, timeout_s))
    quiet["probe_us"] = cpu_probe()  # this moment's cost of fixed work (benchmarks/context.py)
    if not quiet["quiet"]:
        log(
            f"machine not idle after {quiet['waited_s']:.0f} s (broker {quiet['broker_cores']:.2f}, "
            f"others {quiet['other_cores']:.2f} cores); measuring anyway"
        )
    return quiet


async def _rounds(
    cfg: RunConfig,
    ctx: Context,
    chosen: list[Contender],
    results: dict[str, Any],
    input_topic: str,
    customers_topic: str,
    expected: Callable[[Contender], int],
    streams: dict[str, tuple[StreamDataset, dict[str, str]]] | None = None,
) -> None:
    """Throughput: warm-up round(s), discarded, then ``cfg.runs`` rounds, each contender once per
    round in an order rotated per round; every run waits for an idle broker first.

    ``streams``: per `window`/`join` kind, its data set and input topics (role -> topic)."""
    failures: dict[str, int] = {}
    # a join's offsets -> event times, for which side each contender read ahead (read_lead.py)
    lead_times = {
        kind: {role: times_by_partition(items, PARTITIONS) for role, items in sdata.inputs.items()}
        for kind, (sdata, _inputs) in (streams or {}).items()
        if "settlements" in sdata.inputs
    }
    order = rounds.rotation([c.name for c in chosen], cfg.warmup_rounds + cfg.runs)
    for rnd, names in enumerate(order):
        measured = rnd >= cfg.warmup_rounds
        what = f"round {rnd - cfg.warmup_rounds + 1}/{cfg.runs}" if measured else "warm-up"
        for position, name in enumerate(names):
            if failures.get(name, 0) >= 2:  # a broken contender would cost 90 s in every round
                continue
            c = BY_NAME[name]
            entry = results["contenders"][name]
            before = await _quiet(ctx, cfg.quiet_timeout_s)
            try:
                if streams and c.kind in streams:
                    sdata, sinputs = streams[c.kind]
                    r = await throughput_run(
                        ctx,
                        c,
                        sinputs["input"],
                        customers_topic,
                        expected(c),
                        f"t{rnd}",
                        settlements_topic=sinputs.get("settlements", ""),
                        events_per_output=sdata.events_per_output,
                        lead_times=lead_times.get(c.kind),
                    )
                else:
                    r = await throughput_run(ctx, c, input_topic, customers_topic, expected(c), f"t{rnd}")
            except RunFailed as exc:
                failures[name] = failures.get(name, 0) + 1
                r = {"error": str(exc)}
                log(f"{name} {what}: FAILED — {str(exc).splitlines()[0]}")
            else:
                _log_run(name, r, what)
            r.update(round=rnd - cfg.warmup_rounds, position=position, before=before)
            entry["runs" if measured else "warmup_runs"].append(r)


async def _quick(
    cfg: RunConfig,
    ctx: Context,
    chosen: list[Contender],
    results: dict[str, Any],
    data: Dataset,
    customers_topic: str,
    expected: Callable[[Contender], int],
    stream_data: dict[str, StreamDataset] | None = None,
) -> None:
    """One process per contender: throughput on its copy of the data, then latency while warm."""
    for c in chosen:
        entry = results["contenders"][c.name]
        before = await _quiet(ctx, min(cfg.quiet_timeout_s, 3.0))  # a smoke test: short waits
        if c.kind in STREAM_KINDS:
            try:
                tput = await quick_stream_session(ctx, c, stream_data[c.kind])
            except RunFailed as exc:
                entry["runs"].append({"error": str(exc)})
                log(f"{c.name}: FAILED — {str(exc).splitlines()[0]}")
            else:
                tput.update(round=0, position=0, before=before)
                entry["runs"].append(tput)
                _log_run(c.name, tput, "throughput")
            _summarise(entry)
            continue
        try:
            tput, latency = await quick_session(
                ctx,
                c,
                data,
                customers_topic,
                expected(c),
                cfg.rates if cfg.latency else [],
                cfg.latency_seconds,
                drain_s=3.0,
            )
        except RunFailed as exc:
            entry["runs"].append({"error": str(exc)})
            log(f"{c.name}: FAILED — {str(exc).splitlines()[0]}")
        else:
            tput.update(round=0, position=0, before=before)
            entry["runs"].append(tput)
            _log_run(c.name, tput, "throughput")
            if latency:
                entry["latency"] = latency
            for rate, lat in latency.items():
                _log_latency(c.name, int(rate), lat)
        _summarise(entry)


async def run(cfg: RunConfig) -> dict[str, Any]:
    check_local(cfg.bootstrap)
    started = datetime.now(UTC)
    run_id = started.strftime("%H%M%S") + uuid.uuid4().hex[:4]
    work_dir = Path(tempfile.mkdtemp(prefix=f"bench-{run_id}-"))
    info = machine.info(cfg.bootstrap)
    pids = info["broker_pids"]
    ctx = Context(cfg.bootstrap, run_id, work_dir, keep_topics=cfg.keep_topics, broker_pids=pids)
    chosen, skipped = select(cfg.only)
    results: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "run_id": run_id,
        "config": {
            "quick": cfg.quick,
            "records": cfg.records,
            "runs": cfg.runs,
            "rates": cfg.rates,
            "latency_seconds": cfg.latency_seconds,
            "workers": cfg.workers,
            "only": cfg.only,
            "warmup_rounds": 0 if cfg.quick else cfg.warmup_rounds,
        },
        "machine": info,
        "contenders": {},
    }
    for c in CONTENDERS:
        if cfg.only and c.name not in cfg.only:
            continue
        results["contenders"][c.name] = {
            "kind": c.kind,
            "description": c.description,
            "ours": c.ours,
            "status": "skipped" if c.name in skipped else "ok",
            "reason": skipped.get(c.name, ""),
            "runs": [],
            "warmup_runs": [],
        }
    input_topic = f"bench.{run_id}.transactions"
    customers_topic = f"bench.{run_id}.customers"
    stream_kinds = {c.kind for c in chosen if c.kind in STREAM_KINDS}
    try:
        stream_data = make_stream_datasets(stream_kinds, cfg.records)
        streams: dict[str, tuple[StreamDataset, dict[str, str]]] = {}
        for kind, sdata in stream_data.items():
            inputs = {}
            if not cfg.quick:  # --quick: every contender writes its own copy (quick_stream_session)
                inputs = await produce_stream_dataset(cfg.bootstrap, sdata, f"bench.{run_id}.{kind}")
            ctx.created += list(inputs.values())
            streams[kind] = (sdata, inputs)
            log(
                f"{kind}: {sdata.events:,} input events, {sdata.expected_outputs:,} expected outputs "
                f"({sdata.source})"
            )
        log(f"generating {cfg.records:,} transactions")
        data = make_dataset(cfg.records)
        await create_topics(cfg.bootstrap, [input_topic, customers_topic], compact=[customers_topic])
        ctx.created += [input_topic, customers_topic]
        await produce_records(cfg.bootstrap, customers_topic, data.customers, "customer_id")
        produce_s = await produce_records(cfg.bootstrap, input_topic, data.transactions, "account_id")
        log(
            f"pre-produced {cfg.records:,} records in {produce_s:.2f} s ({cfg.records / produce_s:,.0f}/s) "
            f"into {input_topic}"
        )
        results["data"] = {
            "records": cfg.records,
            "customers": len(data.customers),
            "avg_bytes": data.avg_bytes,
            "partitions": PARTITIONS,
            "produce_s": produce_s,
            "expected_enriched": data.expected_enriched,
            "expected_invalid": data.expected_invalid,
            "source": data.source,
            "input_topic": input_topic,
        }
        for kind, sdata in stream_data.items():
            results["data"][kind] = {
                "events": sdata.events,
                "expected_outputs": sdata.expected_outputs,
                "events_per_output": sdata.events_per_output,
                "avg_bytes": sdata.avg_bytes,
                "source": sdata.source,
                **sdata.meta,
            }

        def expected(c: Contender) -> int:
            if c.kind in stream_data:
                return stream_data[c.kind].expected_outputs
            return cfg.records if c.kind == "forward" else data.expected_enriched + data.expected_invalid

        if cfg.quick:
            await _quick(cfg, ctx, chosen, results, data, customers_topic, expected, stream_data)
            chosen = []  # everything below is for full runs

        await _rounds(cfg, ctx, chosen, results, input_topic, customers_topic, expected, streams)
        for c in chosen:
            _summarise(results["contenders"][c.name])

        if cfg.latency:
            for c in chosen:
                entry = results["contenders"][c.name]
                if entry["status"] != "ok" or c.kind in STREAM_KINDS:
                    continue
                entry["latency"] = {}
                for rate in cfg.rates:
                    before = await _quiet(ctx, cfg.quiet_timeout_s)
                    try:
                        lat = await latency_run(
                            ctx, c, customers_topic, data.customers, rate, cfg.latency_seconds
                        )
                    except RunFailed as exc:
                        lat = {"error": str(exc)}
                    lat["before"] = before
                    entry["latency"][str(rate)] = lat
                    _log_latency(c.name, rate, lat)

        if cfg.scaling:
            for c in chosen:
                entry = results["contenders"][c.name]
                if not c.scaling or entry["status"] != "ok":
                    continue
                entry["scaling"] = {}
                for n in cfg.workers:
                    await _quiet(ctx, cfg.quiet_timeout_s)
                    try:
                        r = await throughput_run(
                            ctx, c, input_topic, customers_topic, expected(c), f"w{n}", workers=n
                        )
                    except RunFailed as exc:
                        entry["scaling"][str(n)] = {"error": str(exc)}
                        log(f"{c.name} with {n} workers: FAILED — {str(exc).splitlines()[0]}")
                        continue
                    entry["scaling"][str(n)] = r
                    log(f"{c.name} with {n} workers: {r['throughput_eps']:,.0f} ev/s")
    finally:
        if not cfg.keep_topics:
            await delete_topics(cfg.bootstrap, ctx.created)
            await sweep_topics(cfg.bootstrap, f"bench.{run_id}.")
        shutil.rmtree(work_dir / "state", ignore_errors=True)  # logs stay, for failed runs

    info["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["duration_s"] = (datetime.now(UTC) - started).total_seconds()
    soak_file = cfg.out / "soak-latest.json"
    soak = json.loads(soak_file.read_text()) if soak_file.exists() else None
    results["targets"] = report.targets(results, soak)
    paths = report.write(results, cfg.out)
    log(f"wrote {', '.join(str(p) for p in paths.values())} in {results['duration_s']:.0f} s")
    print(report.markdown(results))
    return results
