"""Durable state at scale: the dedupe store with tens of millions of ids, a cold restore from a
changelog, and a warm restart of a large store.

    python -m benchmarks.state ids --ids 50000000          # RSS and ids/s while the store fills
    python -m benchmarks.state restore --records 2000000   # changelog -> empty RocksDB store, records/s
    python -m benchmarks.state restart --keys 10000000     # kill -9 a fraud worker with 10 M keys
    python -m benchmarks.state all --ids 10000000 --records 2000000

``ids`` runs the real ``dedupe`` step over a RocksDB-backed ``LocalTable`` exactly as a node does
per batch (steps write the overlay, the overlay is sealed and lands in the store with a
checkpoint), with event time compressed so that every id stays inside the 24 h horizon: the
store ends up holding all of them (and their time-index entries). No Kafka: this measures the
store and the step, which is what bounds memory. ``restore`` produces a changelog to the local
broker (127.0.0.1 only) and restores it with the runtime's own ``restore``; then it reopens the
store the way a restarted worker does and times that (only the empty tail is read).

``restart`` runs the fraud topology as shipped (``stream-orch run``, exactly_once, RocksDB
stores: the harness's ``engine_fraud_eos`` entry) on the local broker. Before the worker first
starts, its ``seen_txns`` stores (six partitions, at the path the worker uses for its static
member id) are filled with ``--keys`` keys: half identifiers seen an hour ago, half their
time-index entries, with checkpoint 0 (the changelog is empty, so the checkpoint is valid and
the worker keeps the store). Transactions then flow at ``--rate``; once outputs come, the worker
is killed with SIGKILL and started again at once, the producer carrying on. Measured: seconds
from the restart (and from the kill) to the first output record a ``read_committed`` reader
sees on the enriched topic after the kill (positioned at the topic's last stable offsets at the
kill, so outputs committed before it do not count, nor do aborted ones). The stores are reopened
after the run to check the keys are still there.

``ids`` reports ids/s per million ids in wall time and per CPU second of the process (RocksDB's
background threads included), since the machine is shared: CPU time is what the store costs,
wall time also holds other processes' load. Results go to ``benchmarks/results/state-latest.json``.
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
    from stream_orch.state.tables import LocalKeys, LocalTable
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

    opener = store_opener("rocksdb", folder, root=folder.parent)
    table = LocalTable("seen_txns", "seen_txns.changelog", opener)
    table.open(0)
    step = DedupeStepImpl(field="txn_id", table="seen_txns", horizon_ms=HORIZON_MS)
    table.keep_local(LocalKeys(*step.local_keys, step.derive))  # the index: local, as in a node
    ctx = Ctx(table)
    step_ms = max(1, HORIZON_MS // max(n, 1))  # all n ids inside one horizon
    t0, samples, offset = 1_700_000_000_000, [], 0
    started = window_start = time.perf_counter()
    cpu_start = time.process_time()
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
            now, cpu = time.perf_counter(), time.process_time()
            samples.append(
                {
                    "ids": start + len(events),
                    "ids_per_s": round(window_ids / (now - window_start)),
                    "ids_per_cpu_s": round(window_ids / max(cpu - cpu_start, 1e-9)),
                    "rss_mb": round(_rss_mb(), 1),
                    "load_1m": round(os.getloadavg()[0], 2),
                }
            )
            print(f"[state] {samples[-1]}", flush=True)
            window_start, window_ids, cpu_start = now, 0, cpu
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
        "first_ids_per_cpu_s": samples[0]["ids_per_cpu_s"],
        "last_ids_per_cpu_s": samples[-1]["ids_per_cpu_s"],
        "samples": samples,
    }
    table.close()
    return result


async def restore(records: int, bootstrap: str, folder: Path) -> dict[str, Any]:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from stream_orch.state.restore import restore as restore_table
    from stream_orch.state.store import store_opener
    from stream_orch.state.tables import LocalKeys, LocalTable
    from stream_orch.steps.dedupe import DedupeStepImpl

    # a dedupe table's changelog (ids only): the restore rebuilds each id's time-index entry
    step = DedupeStepImpl(field="txn_id", table="t", horizon_ms=HORIZON_MS)
    local = LocalKeys(*step.local_keys, step.derive)
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
    opener = store_opener("rocksdb", folder, root=folder.parent)
    try:
        table = LocalTable("t", topic, opener)
        table.keep_local(local)
        started = time.perf_counter()
        read, kept = await restore_table(args, table, [0])
        cold_s = time.perf_counter() - started
        keys = len(table._stores[0])
        table.close()
        table = LocalTable("t", topic, opener)  # a restarted worker
        table.keep_local(local)
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


def _prefill(folder: Path, keys: int, partitions: int, seen_ms: int) -> int:
    """Fill the stores of one dedupe table: ``keys`` keys over ``partitions`` partitions, half
    identifiers and half their time-index entries (the dedupe step's layout), checkpoint 0."""
    from stream_orch.state.store import store_opener
    from stream_orch.steps.dedupe import index_key

    opener = store_opener("rocksdb", folder, root=folder.parent)
    ids_per_partition = keys // 2 // partitions
    total = 0
    for p in range(partitions):
        store = opener(p)
        try:
            for start in range(0, ids_per_partition, 20_000):
                changes: dict[str, Any] = {}
                for i in range(start, min(ids_per_partition, start + 20_000)):
                    ident = f"P{p}-{i:010d}"
                    changes[ident] = seen_ms
                    changes[index_key(seen_ms, ident)] = 1
                store.write(changes, 0)
            total += len(store)
        finally:
            store.close()
        print(f"[state] prefilled partition {p}: {total:,} keys so far", flush=True)
    return total


async def _first_output(
    bootstrap: str, topic: str, partitions: int, start: dict[Any, int], timeout_s: float
) -> float:
    """Waits for the first record a read_committed reader sees on ``topic`` at or after the
    offsets ``start``; returns the perf_counter instant it arrived."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start[tp])
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            batch = await consumer.getmany(timeout_ms=50, max_records=1)
            if any(batch.values()):
                return time.perf_counter()
        raise TimeoutError(f"no output on {topic} within {timeout_s:.0f} s of the restart")
    finally:
        await consumer.stop()


async def restart(keys: int, rate: int, bootstrap: str) -> dict[str, Any]:
    import dataclasses

    from aiokafka import AIOKafkaConsumer, TopicPartition

    from benchmarks import env as benv
    from benchmarks.data import make_customers, produce_records
    from benchmarks.kafka import PARTITIONS, OffsetWatcher, create_topics, delete_topics, sweep_topics
    from benchmarks.latency import PacedProducer
    from benchmarks.measure import _check_alive, _start, _worker_env
    from benchmarks.runner import one_contender
    from stream_orch.state.store import store_opener

    setup = one_contender("engine_fraud_eos", bootstrap, "restart")
    if setup is None:
        raise SystemExit("engine_fraud_eos cannot run here")
    c, ctx, topics, all_topics = setup
    instance = "bench-state-restart"
    c = dataclasses.replace(c, extra_env={**c.extra_env, "STREAM_ORCH_INSTANCE_ID": instance})
    group = topics.prefix
    wenv = _worker_env(ctx, c, topics, group, 0)
    stores = Path(wenv[benv.STATE_DIR]) / "stores" / wenv[benv.TOPOLOGY] / instance / "seen_txns"
    output = topics.out[benv.ENRICHED]
    now_ms = int(time.time() * 1000)
    started = time.perf_counter()
    prefilled = _prefill(stores, keys, PARTITIONS, now_ms - 3_600_000)
    prefill_s = time.perf_counter() - started
    print(f"[state] {prefilled:,} keys in {prefill_s:.0f} s", flush=True)
    await create_topics(bootstrap, all_topics, compact=[topics.customers])
    profiles = make_customers(5000)
    procs: list[Any] = []
    producer = PacedProducer(bootstrap, topics.input, profiles)
    result: dict[str, Any] = {"keys_prefilled": prefilled, "prefill_s": round(prefill_s, 1), "rate": rate}
    try:
        await produce_records(bootstrap, topics.customers, profiles, "customer_id")
        procs = _start(ctx, c, topics, group, 1)
        await producer.start()
        feed = asyncio.create_task(producer.run(rate, 3600, prefix="R"))
        async with OffsetWatcher(bootstrap, [output]) as watcher:
            first_start = time.perf_counter()
            while await watcher.count() < 5 * rate:  # outputs flowing for a few seconds
                _check_alive(procs)
                if feed.done():
                    feed.result()
                if time.perf_counter() - first_start > 300:
                    raise TimeoutError("the worker produced no steady output within 300 s")
                await asyncio.sleep(0.5)
            result["first_start_to_steady_s"] = round(time.perf_counter() - first_start, 1)
        probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
        await probe.start()
        try:
            tps = [TopicPartition(output, p) for p in range(PARTITIONS)]
            procs[0].proc.kill()  # SIGKILL: no shutdown, open transactions left behind
            killed = time.perf_counter()
            procs[0].proc.wait(10)
            procs[0].stop(0)
            end = await probe.end_offsets(tps)  # committed outputs before the kill
        finally:
            await probe.stop()
        old_log = procs[0].log
        old_log.rename(old_log.with_suffix(".before-kill.log"))
        restarted = time.perf_counter()
        procs = _start(ctx, c, topics, group, 1)
        seen = await _first_output(bootstrap, output, PARTITIONS, end, timeout_s=120)
        _check_alive(procs)
        result.update(
            {
                "restart_to_first_output_s": round(seen - restarted, 2),
                "kill_to_first_output_s": round(seen - killed, 2),
                "kill_to_restart_s": round(restarted - killed, 2),
            }
        )
        feed.cancel()
        await asyncio.gather(feed, return_exceptions=True)
    finally:
        for p in procs:
            p.stop()
        await producer.stop()
        await delete_topics(bootstrap, all_topics)
        await sweep_topics(bootstrap, topics.prefix)
    opener = store_opener("rocksdb", stores, root=stores.parent)
    after = 0
    for p in range(PARTITIONS):
        store = opener(p)
        after += len(store)
        store.close()
    result["keys_after"] = after
    shutil.rmtree(ctx.work_dir, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.state", description=__doc__)
    parser.add_argument("what", choices=["ids", "restore", "restart", "all"])
    parser.add_argument("--ids", type=int, default=10_000_000)
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument("--keys", type=int, default=10_000_000, help="restart: keys in local state")
    parser.add_argument("--rate", type=int, default=2000, help="restart: events/s offered")
    parser.add_argument("--bootstrap", default=env.DEFAULT_BOOTSTRAP)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.bootstrap.split(":")[0] not in ("127.0.0.1", "localhost"):
        parser.error("--bootstrap must be a broker on this machine (127.0.0.1)")
    from benchmarks import machine
    from benchmarks.procs import install_cleanup

    install_cleanup()
    results: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "machine": machine.info(args.bootstrap) if args.what != "ids" else {"cpu_model": machine.cpu_model()},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
    }
    work = Path(tempfile.mkdtemp(prefix="bench-state-"))
    try:
        if args.what in ("ids", "all"):
            results["ids"] = asyncio.run(ids(args.ids, work / "ids"))
        if args.what in ("restore", "all"):
            results["restore"] = asyncio.run(restore(args.records, args.bootstrap, work / "restore"))
        if args.what in ("restart", "all"):
            results["restart"] = asyncio.run(restart(args.keys, args.rate, args.bootstrap))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"state-{args.what}-{time.strftime('%Y%m%dT%H%M%S')}.json").write_bytes(
        orjson.dumps(results, option=orjson.OPT_INDENT_2)
    )
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
