"""Correctness of the `window` and `join` contenders: run one on a small data set and compare what it
wrote with the reference (``python -m benchmarks.streams_check NAME...``; the integration test
``tests/integration/test_bench_streams.py`` uses it).

window: every output ``{merchant_id, window_start, window_end, txn_count}`` must be a window of the
data with its count, each window once. join: every payment's outcome (the topic it came out on)
must be the generator's ground truth, each payment once, and an unreconciled one must carry the
severity by amount.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from benchmarks import env
from benchmarks.contenders import BY_NAME
from benchmarks.data import StreamDataset, make_join_dataset, make_window_dataset
from benchmarks.kafka import PARTITIONS, OffsetWatcher, create_topics, sweep_topics
from benchmarks.measure import Context, RunTopics, _check_alive, _start, produce_stream_dataset

OUTCOME_TOPICS = {env.RECONCILED: "reconciled", env.MISMATCH: "mismatch", env.UNRECONCILED: "unreconciled"}


def small_dataset(kind: str) -> StreamDataset:
    if kind == "window":
        return make_window_dataset(3000, merchants=50, minutes=6, seed=3)
    return make_join_dataset(800, seed=11, minutes=120)


async def read_all(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every record of ``topic`` (its end offsets taken first, by a consumer of their own)."""
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await probe.start()
    try:
        ends = await probe.end_offsets(tps)
    finally:
        await probe.stop()
    if not sum(ends.values()):
        return []
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign([tp for tp in tps if ends[tp] > 0])
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while len(out) < sum(ends.values()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"read {len(out)} of {sum(ends.values())} records of {topic}")
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out += [orjson.loads(r.value) for r in records]
        return out
    finally:
        await consumer.stop()


def window_diff(data: StreamDataset, outputs: list[dict[str, Any]]) -> dict[str, Any]:
    got = Counter((o["merchant_id"], o["window_start"]) for o in outputs)
    counts = {(o["merchant_id"], o["window_start"]): o["txn_count"] for o in outputs}
    ref = data.reference
    return {
        "windows": len(ref),
        "outputs": len(outputs),
        "missing": sorted(set(ref) - set(got))[:10],
        "unexpected": sorted(set(got) - set(ref))[:10],
        "twice": sorted(k for k, n in got.items() if n > 1)[:10],
        "wrong_count": sorted(k for k in set(ref) & set(counts) if counts[k] != ref[k])[:10],
        "wrong_end": [o for o in outputs if o["window_end"] != o["window_start"] + 60_000][:3],
    }


def join_diff(data: StreamDataset, outputs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    truth: dict[str, str] = data.reference["outcome"]
    severity: dict[str, str] = data.reference["severity"]
    got: dict[str, list[str]] = {}
    bad_severity = []
    for outcome, records in outputs.items():
        for r in records:
            got.setdefault(r["payment_id"], []).append(outcome)
            if outcome == "unreconciled" and r.get("severity") != severity.get(r["payment_id"]):
                bad_severity.append(r["payment_id"])
    wrong = {p: (truth.get(p), o) for p, o in got.items() if o != [truth.get(p)]}
    return {
        "payments": len(truth),
        "outputs": sum(len(v) for v in outputs.values()),
        "by_topic": {k: len(v) for k, v in outputs.items()},
        "missing": sorted(set(truth) - set(got))[:10],
        "wrong": dict(list(wrong.items())[:10]),
        "wrong_total": len(wrong),
        "wrong_kinds": dict(Counter(f"{t}->{'+'.join(o)}" for t, o in wrong.values())),
        "bad_severity": bad_severity[:10],
    }


def ok(diff: dict[str, Any]) -> bool:
    keys = ("missing", "unexpected", "twice", "wrong_count", "wrong_end", "wrong", "bad_severity")
    return not any(diff.get(k) for k in keys)


async def check(bootstrap: str, name: str, data: StreamDataset | None = None, settle_s: float = 3.0) -> dict:
    """Run contender ``name`` once over ``data`` (default: :func:`small_dataset`) until its counted
    topics hold the expected number of records (plus ``settle_s`` for any extra), then compare."""
    c = BY_NAME[name]
    data = data or small_dataset(c.kind)
    run_id = "chk" + uuid.uuid4().hex[:8]
    ctx = Context(bootstrap, run_id, Path(tempfile.mkdtemp(prefix=f"bench-check-{name}-")))
    prefix = f"bench.{run_id}.{name}"
    procs = []
    try:
        inputs = await produce_stream_dataset(bootstrap, data, f"{prefix}.data")
        topics = RunTopics(prefix, inputs["input"], "", inputs.get("settlements", ""))
        await create_topics(bootstrap, topics.outputs(c.kind))
        procs = _start(ctx, c, topics, prefix, 1)
        started = time.monotonic()
        async with OffsetWatcher(bootstrap, topics.counted(c.kind)) as watcher:
            # until the expected number is there and nothing more came for settle_s (a contender
            # that writes some outcomes twice reaches the number before it has read everything)
            count, changed = -1, time.monotonic()
            while True:
                _check_alive(procs)
                now, new = time.monotonic(), await watcher.count()
                if new != count:
                    count, changed = new, now
                if count >= data.expected_outputs and now - changed >= settle_s:
                    break
                if now - started > 90:
                    break  # compare what is there: the diff says what is missing
                await asyncio.sleep(0.2)
        elapsed = time.monotonic() - started
        if c.kind == "window":
            diff = window_diff(data, await read_all(bootstrap, topics.out[env.OUTPUT]))
        else:
            outputs = {o: await read_all(bootstrap, topics.out[v]) for v, o in OUTCOME_TOPICS.items()}
            diff = join_diff(data, outputs)
        diff["dlq"] = len(await read_all(bootstrap, topics.out[env.DLQ]))
        diff["seconds"] = round(elapsed, 1)
        diff["ok"] = ok(diff) and diff["dlq"] == 0
        return diff
    finally:
        for p in procs:
            p.stop()
        await sweep_topics(bootstrap, run_id)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="+")
    parser.add_argument("--bootstrap", default=env.DEFAULT_BOOTSTRAP)
    args = parser.parse_args()
    failed = 0
    for name in args.names:
        diff = asyncio.run(check(args.bootstrap, name))
        print(name, orjson.dumps(diff, option=orjson.OPT_NON_STR_KEYS).decode())
        failed += not diff["ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
