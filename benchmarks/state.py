"""Durable state at scale: the dedupe store with tens of millions of ids, a cold restore from a
changelog, and a warm restart of a large store.

    python -m benchmarks.state ids --ids 50000000          # RSS and ids/s while the store fills
    python -m benchmarks.state restore --records 2000000   # changelog -> empty RocksDB store, records/s
    python -m benchmarks.state all --ids 10000000 --records 2000000

``ids`` runs the real ``dedupe`` step over a RocksDB-backed ``LocalTable`` exactly as a node does
per batch (steps write the overlay, the overlay is sealed and lands in the store with a
checkpoint), with event time compressed so that every id stays inside the 24 h horizon: the
store ends up holding all of them (and their time-index entries). No Kafka: this measures the
store and the step, which is what bounds memory. ``restore`` produces a changelog to the local
broker (127.0.0.1 only) and restores it with the runtime's own ``restore``; then it reopens the
store the way a restarted worker does and times that (only the empty tail is read).
Results go to ``benchmarks/results/state-latest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import psutil

from benchmarks import env
from benchmarks.__main__ import DEFAULT_OUT

BATCH = 2000
HORIZON_MS = 86_400_000


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


async def ids(n: int, folder: Path) -> dict[str, Any]:
    from stream_orch.state.store import store_opener
    from stream_orch.state.tables import LocalTable
    from stream_orch.steps.base import Event
    from stream_orch.steps.dedupe import DedupeStepImpl

    class Ctx:
        def __init__(self, table: LocalTable) -> None:
            self._table = table

        def table(self, name: str) -> LocalTable:
            return self._table

        def reject(self, *args: Any) -> None:
            raise AssertionError(args)

        def drop(self, *args: Any) -> None:
            raise AssertionError(args)

    table = LocalTable("seen_txns", "seen_txns.changelog", store_opener("rocksdb", folder))
    table.open(0)
    step = DedupeStepImpl(field="txn_id", table="seen_txns", horizon_ms=HORIZON_MS)
    ctx = Ctx(table)
    step_ms = max(1, HORIZON_MS // max(n, 1))  # all n ids inside one horizon
    t0, samples, offset = 1_700_000_000_000, [], 0
    started = window_start = time.perf_counter()
    window_ids = 0
    for start in range(0, n, BATCH):
        events = [
            Event({"txn_id": f"T-{i:011d}", "ts": t0 + i * step_ms}, partition=0, offset=i, topic="in")
            for i in range(start, min(n, start + BATCH))
        ]
        out = await step.run(events, ctx)
        assert len(out) == len(events)
        step.release([])
        sealed = table.seal()
        offset += sum(len(w) for w in sealed.overlay.values())
        sealed.land({("seen_txns.changelog", 0): offset - 1})
        window_ids += len(events)
        if window_ids >= 1_000_000 or start + BATCH >= n:
            now = time.perf_counter()
            samples.append(
                {
                    "ids": start + len(events),
                    "ids_per_s": round(window_ids / (now - window_start)),
                    "rss_mb": round(_rss_mb(), 1),
                }
            )
            print(f"[state] {samples[-1]}", flush=True)
            window_start, window_ids = now, 0
    elapsed = time.perf_counter() - started
    store = table._stores[0]
    result = {
        "ids": n,
        "keys_in_store": len(store),
        "seconds": round(elapsed, 1),
        "bytes_on_disk": store.size_bytes(),
        "rss_max_mb": max(s["rss_mb"] for s in samples),
        "first_ids_per_s": samples[0]["ids_per_s"],
        "last_ids_per_s": samples[-1]["ids_per_s"],
        "samples": samples,
    }
    table.close()
    return result


async def restore(records: int, bootstrap: str, folder: Path) -> dict[str, Any]:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from stream_orch.state.restore import restore as restore_table
    from stream_orch.state.store import store_opener
    from stream_orch.state.tables import LocalTable

    topic = f"bench.state.{uuid.uuid4().hex[:8]}.changelog"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"cleanup.policy": "compact"})])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    try:
        value = orjson.dumps(1_700_000_000_000)
        for start in range(0, records, 50_000):
            futures = [
                await producer.send(topic, key=b"T-%011d" % i, value=value, partition=0)
                for i in range(start, min(records, start + 50_000))
            ]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    args = {"bootstrap_servers": bootstrap}
    try:
        table = LocalTable("t", topic, store_opener("rocksdb", folder))
        started = time.perf_counter()
        read, kept = await restore_table(args, table, [0])
        cold_s = time.perf_counter() - started
        keys = len(table._stores[0])
        table.close()
        table = LocalTable("t", topic, store_opener("rocksdb", folder))  # a restarted worker
        started = time.perf_counter()
        tail, kept = await restore_table(args, table, [0])
        warm_s = time.perf_counter() - started
        table.close()
    finally:
        await admin.delete_topics([topic])
        await admin.close()
    return {
        "records": records,
        "cold_restore_s": round(cold_s, 2),
        "cold_restore_records_per_s": round(read / cold_s),
        "keys": keys,
        "warm_restart_s": round(warm_s, 3),
        "warm_restart_records_read": tail,
        "warm_restart_keys_kept": kept,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.state", description=__doc__)
    parser.add_argument("what", choices=["ids", "restore", "all"])
    parser.add_argument("--ids", type=int, default=10_000_000)
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument("--bootstrap", default=env.DEFAULT_BOOTSTRAP)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.bootstrap.split(":")[0] not in ("127.0.0.1", "localhost"):
        parser.error("--bootstrap must be a broker on this machine (127.0.0.1)")
    results: dict[str, Any] = {"cpu_count": os.cpu_count()}
    work = Path(tempfile.mkdtemp(prefix="bench-state-"))
    try:
        if args.what in ("ids", "all"):
            results["ids"] = asyncio.run(ids(args.ids, work / "ids"))
        if args.what in ("restore", "all"):
            results["restore"] = asyncio.run(restore(args.records, args.bootstrap, work / "restore"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "state-latest.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    summary = {
        k: {kk: vv for kk, vv in v.items() if kk != "samples"}
        for k, v in results.items()
        if isinstance(v, dict)
    }
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
