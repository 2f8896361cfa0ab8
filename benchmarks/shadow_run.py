"""A shadow run's cost to the live worker (issue 23: "a shadow run of the fraud topology must not
slow the live worker by more than 10 %"): the live fraud worker's throughput alone and with a
shadow worker (`run --shadow --from-time`, a copy with one score weight changed) on the same input
at the same time, side by side in one run.

    python -m benchmarks.shadow_run                     # 60k transactions, 2 rounds of each mode
    python -m benchmarks.shadow_run --records 100000 --rounds 3 --modes alone,shadow

Modes (each round runs every mode once, the order rotated per round):

* ``alone``: the live worker on a backlog of ``--records`` transactions;
* ``shadow``: the same, with the shadow worker started on the same backlog just before it: both
  compete for the machine's cores (and the broker's), as they would on one host;
* ``alone_cpu0`` / ``shadow_cpu1``: the live worker pinned to core 0 (``taskset``), alone and
  with the shadow pinned to core 1: the shadow on a core of its own (the broker still shares both);
* ``shadow_paced``: as ``shadow``, the shadow run with ``--shadow-rate`` (``--shadow-rate``, default
  2,000 records/s per node).

With ``--rate R`` the input is offered at R transactions/s for ``--seconds`` instead of waiting as a
backlog: what a live worker that keeps up with its traffic sees. The figures are then the rate the
live worker finished at (records over the time from the first offered record to its last
commit) and its largest lag (records behind the end of the input, sampled every 250 ms).

Throughput on a backlog is the live worker's sustained rate: input records between 5 % and 95 % of its group's
committed offsets over the time between them (start-up and the tail left out), sampled every
250 ms. ``processing: at_least_once`` as `engine_fraud`. Every run has fresh topics and groups,
deleted after it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from benchmarks import env
from benchmarks.contenders.engine import ENV, FRAUD_TOPICS, FRAUD_TOPOLOGY, SCHEMAS, _stream_orch, render
from benchmarks.data import make_dataset, produce_records
from benchmarks.kafka import PARTITIONS, create_topics, delete_topics
from benchmarks.latency import PacedProducer
from benchmarks.machine import cpu_model
from benchmarks.procs import Worker, install_cleanup
from benchmarks.rounds import quantile

MODES = {
    "alone": (None, None),  # (live worker's cores, shadow's cores; None: no shadow / not pinned)
    "shadow": (None, "any"),
    "alone_cpu0": ("0", None),
    "shadow_cpu1": ("0", "1"),
    "shadow_paced": (None, "paced"),
}


def _argv(path: Path, cores: str | None, *extra: str) -> list[str]:
    pin = ["taskset", "-c", cores] if cores and cores not in ("any", "paced") else []
    return [*pin, _stream_orch(), "run", str(path), "--schemas", str(SCHEMAS), *extra]


def _render(work: Path, prefix: str) -> tuple[Path, Path, dict[str, str]]:
    """The live copy and the new version (foreign_country 0.2 -> 0.45) of one run's topology."""
    run_env = {env.TOPOLOGY: prefix, **{v: f"{prefix}.{v.lower()}" for v in env.FRAUD_TOPICS}}
    data = render(FRAUD_TOPOLOGY, FRAUD_TOPICS, run_env, processing="at_least_once")
    live = work / "live.yaml"
    live.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))  # JSON is YAML
    score = next(s for s in data["nodes"]["score_transactions"]["steps"] if s["step"] == "score")
    next(r for r in score["rules"] if r["name"] == "foreign_country")["weight"] = 0.45
    data["version"] = "shadow-bench"
    new = work / "new.yaml"
    new.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    return live, new, run_env


async def _progress(
    bootstrap: str, group: str, topic: str, total: int, timeout_s: float
) -> list[tuple[float, int]]:
    """(seconds, committed offsets) of ``group`` on ``topic`` every 250 ms until it has all."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    samples: list[tuple[float, int]] = []
    try:
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            offsets = await admin.list_consumer_group_offsets(group)
            done = sum(om.offset for tp, om in offsets.items() if tp.topic == topic and om.offset > 0)
            samples.append((time.perf_counter(), done))
            if done >= total:
                return samples
            await asyncio.sleep(0.25)
        raise RuntimeError(f"{group}: {samples[-1][1] if samples else 0}/{total} within {timeout_s:.0f} s")
    finally:
        await admin.close()


def sustained(samples: list[tuple[float, int]], total: int) -> float:
    """Records per second between 5 % and 95 % of ``total`` (interpolated crossing times)."""

    def crossing(level: float) -> float:
        for (t0, n0), (t1, n1) in itertools.pairwise(samples):
            if n0 < level <= n1:
                return t0 + (t1 - t0) * (level - n0) / (n1 - n0)
        return samples[-1][0]

    low, high = 0.05 * total, 0.95 * total
    return (high - low) / max(crossing(high) - crossing(low), 1e-6)


async def _wait_stable(bootstrap: str, group: str, timeout_s: float = 90.0) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            for g in await admin.describe_consumer_groups([group]):
                if any(item[2] == "Stable" for item in getattr(g, "groups", None) or []):
                    return
            await asyncio.sleep(0.25)
        raise RuntimeError(f"{group} did not join within {timeout_s:.0f} s")
    finally:
        await admin.close()


async def _paced(
    bootstrap: str, topic: str, group: str, data: Any, rate: int, seconds: float
) -> dict[str, Any]:
    """Offer ``rate`` transactions/s for ``seconds`` while sampling the live group's lag."""
    producer = PacedProducer(bootstrap, topic, data.customers)
    await producer.start()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await reader.start()
    parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    try:
        start = time.perf_counter()
        offering = asyncio.create_task(producer.run(rate, seconds))
        max_lag = 0
        while True:
            end = sum((await reader.end_offsets(parts)).values())
            offsets = await admin.list_consumer_group_offsets(group)
            done = sum(om.offset for tp, om in offsets.items() if tp.topic == topic and om.offset > 0)
            max_lag = max(max_lag, end - done)
            if offering.done() and done >= producer.seq:
                break
            if time.perf_counter() - start > seconds + 300:
                raise RuntimeError(f"{group}: {done}/{producer.seq} after {seconds + 300:.0f} s")
            await asyncio.sleep(0.25)
        sent, offered = offering.result()
        elapsed = time.perf_counter() - start
        return {
            "throughput_eps": sent / elapsed,
            "offered_eps": offered,
            "max_lag": max_lag,
            "live_done_s": elapsed,
        }
    finally:
        await producer.stop()
        await reader.stop()
        await admin.close()


async def one_run(
    bootstrap: str,
    mode: str,
    data: Any,
    work: Path,
    rate: int | None = None,
    seconds: float = 30.0,
    shadow_rate: float = 2000.0,
) -> dict[str, Any]:
    live_cores, shadow_cores = MODES[mode]
    prefix = f"bench_shadow_{uuid.uuid4().hex[:8]}"
    work = work / prefix
    work.mkdir(parents=True)
    live_path, new_path, run_env = _render(work, prefix)
    transactions, customers = run_env[env.INPUT], run_env[env.CUSTOMERS]
    await create_topics(bootstrap, [transactions, customers], compact=[customers])
    await produce_records(bootstrap, customers, data.customers, "customer_id")
    before = int(time.time() * 1000) - 1000
    if rate is None:
        await produce_records(bootstrap, transactions, data.transactions, "account_id")
    worker_env = {**ENV, "STREAM_ORCH_BOOTSTRAP_SERVERS": bootstrap}
    procs = []
    try:
        if shadow_cores is not None:
            at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(before / 1000)) + "Z"
            procs.append(
                Worker(
                    _argv(
                        new_path,
                        shadow_cores,
                        "--shadow",
                        "--from-time",
                        at,
                        *(["--shadow-rate", str(shadow_rate)] if shadow_cores == "paced" else []),
                    ),
                    {**worker_env, "STREAM_ORCH_STATE_DIR": str(work / "shadow.state")},
                    work / "shadow.log",
                )
            )
        live = Worker(
            _argv(live_path, live_cores), {**worker_env, "STREAM_ORCH_STATE_DIR": str(work / "live.state")},
            work / "live.log",
        )  # fmt: skip
        procs.append(live)
        load0 = os.getloadavg()[0]
        if rate is not None:
            await _wait_stable(bootstrap, f"{prefix}.score_transactions")
            if shadow_cores is not None:
                await _wait_stable(bootstrap, f"{prefix}.shadow.score_transactions")
            paced = await _paced(bootstrap, transactions, f"{prefix}.score_transactions", data, rate, seconds)
            return {"mode": mode, **paced, "shadow_done_s": None, "load_1m": [load0, os.getloadavg()[0]]}
        samples = await _progress(
            bootstrap, f"{prefix}.score_transactions", transactions, len(data.transactions), 300
        )
        shadow_done = None
        if shadow_cores not in (None, "paced"):  # a paced shadow finishes long after
            shadow = await _progress(
                bootstrap, f"{prefix}.shadow.score_transactions", transactions, len(data.transactions), 300
            )
            shadow_done = shadow[-1][0] - samples[0][0]
        return {
            "mode": mode,
            "throughput_eps": sustained(samples, len(data.transactions)),
            "live_done_s": samples[-1][0] - samples[0][0],
            "shadow_done_s": shadow_done,
            "load_1m": [load0, os.getloadavg()[0]],
        }
    except RuntimeError as exc:
        tails = "\n".join(f"--- {p.log}\n{p.log_tail()}" for p in procs)
        raise RuntimeError(f"{mode}: {exc}\n{tails}") from None
    finally:
        for p in procs:
            p.stop()
        prefixed = [t for t in await _topics(bootstrap) if t.startswith(prefix)]
        await delete_topics(bootstrap, prefixed)


async def _topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    data = make_dataset(args.records)
    work = Path(f"/tmp/bench-shadow-{int(time.time())}")
    runs = []
    for r in range(args.rounds):
        order = args.modes[r % len(args.modes) :] + args.modes[: r % len(args.modes)]
        for mode in order:
            run = await one_run(args.bootstrap, mode, data, work, args.rate, args.seconds, args.shadow_rate)
            run["round"] = r
            runs.append(run)
            extra = (
                f"offered {run['offered_eps']:,.0f}/s, largest lag {run['max_lag']:,} records"
                if args.rate
                else f"shadow done after {run['shadow_done_s'] or 0:.1f} s"
            )
            print(
                f"round {r} {mode:<12} live {run['throughput_eps']:>8,.0f} records/s "
                f"(done in {run['live_done_s']:.1f} s; {extra}) "
                f"load {run['load_1m'][0]:.2f}->{run['load_1m'][1]:.2f}",
                flush=True,
            )
    return runs


def summary(runs: list[dict[str, Any]], modes: list[str]) -> list[str]:
    by_mode = {m: sorted(r["throughput_eps"] for r in runs if r["mode"] == m) for m in modes}
    lines = ["| mode | live records/s (median) | min-max |", "| --- | ---: | ---: |"]
    for mode, values in by_mode.items():
        if values:
            lines.append(f"| {mode} | {quantile(values, 0.5):,.0f} | {values[0]:,.0f}-{values[-1]:,.0f} |")
    for base, other in (("alone", "shadow"), ("alone_cpu0", "shadow_cpu1"), ("alone", "shadow_paced")):
        if by_mode.get(base) and by_mode.get(other):
            ratio = quantile(by_mode[other], 0.5) / quantile(by_mode[base], 0.5)
            lines.append(f"{other} / {base}: {ratio:.2f} (target >= 0.90)")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.shadow_run", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--bootstrap", default=env.DEFAULT_BOOTSTRAP)
    parser.add_argument("--records", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rate", type=int, help="offer this many transactions/s instead of a backlog")
    parser.add_argument("--seconds", type=float, default=30.0, help="with --rate: for this long")
    parser.add_argument("--shadow-rate", type=float, default=2000.0, help="shadow_paced: its --shadow-rate")
    parser.add_argument(
        "--modes",
        type=lambda s: [m.strip() for m in s.split(",")],
        default=list(MODES),
        help=", ".join(MODES),
    )
    args = parser.parse_args(argv)
    if not args.bootstrap.startswith(("127.0.0.1", "localhost")):
        raise SystemExit("benchmarks talk to a local broker only")
    unknown = [m for m in args.modes if m not in MODES]
    if unknown:
        raise SystemExit(f"unknown modes {unknown}: {', '.join(MODES)}")
    install_cleanup()
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical cores; {args.records:,} transactions per run")
    runs = asyncio.run(main_async(args))
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    name = f"shadow-rate{args.rate}-latest.json" if args.rate else "shadow-latest.json"
    (out / name).write_bytes(orjson.dumps(runs, option=orjson.OPT_INDENT_2))
    print("\n".join(summary(runs, args.modes)))


if __name__ == "__main__":
    main()
