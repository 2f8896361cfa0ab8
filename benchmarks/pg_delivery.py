"""PostgreSQL delivery through the worker vs a plain asyncpg COPY loop, side by side in one run.

    python -m benchmarks.pg_delivery                      # 200k records, batches of 2000, 3 rounds
    python -m benchmarks.pg_delivery --records 500000 --batch 2000 --rounds 3 [--dsn DSN]

Both write the same rows (the records of a 6-partition topic, ~120 bytes of JSON each, decoded)
into an ``insert`` table of the same columns, ``--batch`` rows per transaction, each transaction
also upserting its offset row:

* ``asyncpg COPY loop``: one process, an aiokafka consumer (``getmany`` of up to ``--batch``),
  ``orjson.loads``, ``copy_records_to_table`` and the offsets upsert in one transaction per
  fetched batch; the plainest program a user would write (no validation, no DLQ, no lineage,
  no Kafka commit);
* ``stream-orch worker``: ``stream-orch run`` of a one-node topology whose only route target
  is ``postgres:`` (mode insert, ``batch_size`` = ``--batch``, at_least_once).

Each is measured from its first rows in the table to its last (the steady rate, rows/s; the
seconds from its start to its first rows, process start-up and group join, are reported
apart). The worker's progress is read from its offset rows (a sum of ``next_offset``: cheap,
unlike a count of the table, which would load the database the worker writes to). Rounds
alternate the two (the machine's drift hits both); the ratio is the median of the rounds'
worker/COPY ratios, and each contender's best round is reported too. Without ``--dsn`` a
throw-away local server is started (tests/postgres_server.py). Results:
``benchmarks/results/pg-delivery-latest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from ruamel.yaml import YAML

from benchmarks.kafka import create_topics, delete_topics
from benchmarks.machine import cpu_model
from stream_orch.sinks.postgres_ddl import OFFSETS_DDL, REJECTS_DDL, columns, create_table

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "pg-delivery-latest.json"
BOOTSTRAP = os.environ.get("STREAM_ORCH_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
SCHEMA = {
    "type": "record", "name": "BenchRow", "namespace": "bench",
    "fields": [
        {"name": "seq", "type": "long"},
        {"name": "account", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "currency", "type": "string"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "flagged", "type": "boolean"},
    ],
}
COLS = columns(SCHEMA)
NAMES = [c.name for c in COLS]


def record(i: int) -> dict[str, Any]:
    return {"seq": i, "account": f"acct-{i % 5000:05d}", "amount": round(i * 0.37 % 9000, 2),
            "currency": "EUR", "ts": 1_700_000_000_000 + i, "flagged": i % 17 == 0}


async def fill_topic(topic: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", linger_ms=20,
                                max_batch_size=512 * 1024)
    await producer.start()
    try:
        pending = []
        for i in range(count):
            rec = record(i)
            pending.append(await producer.send(topic, orjson.dumps(rec), key=rec["account"].encode()))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def fresh_table(dsn: str, table: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(OFFSETS_DDL)
        await conn.execute(REJECTS_DDL)
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.execute(create_table(table, COLS, None))
    finally:
        await conn.close()


async def committed_offsets(conn: asyncpg.Connection) -> int:
    """Rows the worker has committed: its offsets start at 0, and every record is one row."""
    return await conn.fetchval("SELECT coalesce(sum(next_offset), 0)::bigint FROM stream_orch_offsets "
                               "WHERE grp LIKE 'pgbench%'") or 0


async def clear_offsets(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DELETE FROM stream_orch_offsets")
    finally:
        await conn.close()


async def count_rows(dsn: str, table: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(f"SELECT count(*) FROM {table}")
    finally:
        await conn.close()


async def copy_loop(dsn: str, topic: str, table: str, count: int, batch: int) -> tuple[float, float]:
    """The plain program: consume, decode, COPY + offset row per transaction. (Seconds from its
    start to its first commit, rows/s from the first commit to the last.)"""
    from stream_orch.sinks.postgres_ddl import row_converter

    row = row_converter(COLS)  # the worker's own conversion, so neither pays more for it
    started = time.monotonic()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=BOOTSTRAP, group_id=f"bench-copy-{uuid.uuid4().hex}",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    conn = await asyncpg.connect(dsn)
    done = 0
    first: tuple[float, int] | None = None
    try:
        while done < count:
            got = await consumer.getmany(timeout_ms=1000, max_records=batch)
            if not got:
                continue
            # one transaction per fetched batch, as the worker's: rows, then each partition's offset
            rows = [row(orjson.loads(m.value)) for msgs in got.values() for m in msgs]
            async with conn.transaction():
                await conn.copy_records_to_table(table, records=rows, columns=NAMES)
                await conn.execute(
                    "INSERT INTO stream_orch_offsets SELECT 'copy', t, p, n FROM "
                    "unnest($1::text[], $2::int[], $3::bigint[]) AS u(t, p, n) ON CONFLICT "
                    "(grp, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset",
                    [tp.topic for tp in got], [tp.partition for tp in got],
                    [msgs[-1].offset + 1 for msgs in got.values()])
            done += len(rows)
            if first is None:
                first = (time.monotonic(), done)
    finally:
        await conn.close()
        await consumer.stop()
    assert first is not None
    return first[0] - started, (count - first[1]) / (time.monotonic() - first[0])


def topology(folder: Path, topic: str, table: str, batch: int) -> Path:
    name = f"pgbench_{uuid.uuid4().hex[:8]}"
    doc = {
        "topology": name,
        "processing": "at_least_once",
        "topics": {topic: {"partitions": 6, "key": "account"}, f"{topic}.dlq": {"partitions": 1}},
        "nodes": {"deliver": {
            "input": topic,
            "batch_size": batch,
            "routes": [{"to": [{"postgres": {"dsn_env": "BENCH_PG_DSN", "table": table, "mode": "insert",
                                             "schema": "bench_row"}}]}],
            "errors": {"dlq": f"{topic}.dlq", "retry": {"delays": ["1s"]}},
        }},
    }
    path = folder / "pgbench.yaml"
    with path.open("w") as fh:
        YAML().dump(doc, fh)
    return path


async def worker_run(
    dsn: str, topic: str, table: str, count: int, batch: int, folder: Path
) -> tuple[float, float]:
    """``stream-orch run`` until the table is full: (seconds from the process's start to the first
    rows, rows/s from the first rows to the last: the table's count polled every 50 ms)."""
    schemas = folder / "schemas"
    schemas.mkdir(exist_ok=True)
    (schemas / "bench_row.avsc").write_bytes(orjson.dumps(SCHEMA))
    path = topology(folder, topic, table, batch)
    env = {**os.environ, "BENCH_PG_DSN": dsn, "STREAM_ORCH_BOOTSTRAP_SERVERS": BOOTSTRAP,
           "STREAM_ORCH_STATE_DIR": str(folder / "state"), "STREAM_ORCH_METRICS_PORT": "0"}
    log = (folder / "worker.log").open("ab")
    started = time.monotonic()
    spy = os.environ.get("PG_BENCH_SPY")  # a py-spy profile of the worker to this file
    pre = [str(Path(sys.executable).parent / "py-spy"), "record", "-o", spy, "-f", "speedscope", "--"]
    pre = pre if spy else []
    proc = subprocess.Popen([*pre, sys.executable, "-m", "stream_orch.cli.main", "run", str(path),
                             "--schemas", str(schemas)], stdout=log, stderr=subprocess.STDOUT, env=env)
    first: tuple[float, int] | None = None
    conn = await asyncpg.connect(dsn)
    try:
        while (n := await committed_offsets(conn)) < count:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited: {(folder / 'worker.log').read_text()[-2000:]}")
            if n and first is None:
                first = (time.monotonic(), n)
            await asyncio.sleep(0.05)
        assert first is not None
        return first[0] - started, (count - first[1]) / (time.monotonic() - first[0])
    finally:
        await conn.close()
        proc.send_signal(signal.SIGINT)  # py-spy writes its profile when its child ends
        proc.wait(30)


async def main_async(dsn: str, records: int, batch: int, rounds: int) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    topic = f"pgbench.in.{run_id}"
    await create_topics(BOOTSTRAP, [topic, f"{topic}.dlq"], partitions=6)
    best: dict[str, float] = {}  # rows/s, the best round
    ratios: list[float] = []  # worker / COPY loop, per round
    startup: dict[str, float] = {}  # seconds to the first rows, the best round
    try:
        await fill_topic(topic, records)
        with tempfile.TemporaryDirectory(prefix="pgbench-") as tmp:
            for r in range(rounds):
                for name in ("asyncpg COPY loop", "stream-orch worker"):
                    table = f"pgbench_{r}_{'copy' if 'COPY' in name else 'worker'}"
                    await fresh_table(dsn, table)
                    await clear_offsets(dsn)
                    if "COPY" in name:
                        start, rate = await copy_loop(dsn, topic, table, records, batch)
                    else:
                        folder = Path(tmp) / f"round{r}"
                        folder.mkdir()
                        start, rate = await worker_run(dsn, topic, table, records, batch, folder)
                    assert await count_rows(dsn, table) == records
                    best[name] = max(best.get(name, rate), rate)
                    if "COPY" in name:
                        copy_rate = rate
                    else:
                        ratios.append(rate / copy_rate)
                    startup[name] = min(startup.get(name, start), start)
                    print(f"round {r + 1} {name}: {rate:,.0f} rows/s, first rows after {start:.2f} s",
                          flush=True)
    finally:
        await delete_topics(BOOTSTRAP, [topic, f"{topic}.dlq", f"{topic}.retry.1"])
    return {
        "machine": cpu_model(), "cores": os.cpu_count(), "records": records, "batch": batch,
        "rounds": rounds, "rows_per_s": {k: round(v) for k, v in best.items()},
        "seconds_to_first_rows": {k: round(v, 2) for k, v in startup.items()},
        "ratio_worker_to_copy_per_round": [round(r, 3) for r in ratios],
        "ratio_worker_to_copy_median": round(statistics.median(ratios), 3),
        "ratio_of_bests": round(best["stream-orch worker"] / best["asyncpg COPY loop"], 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="PostgreSQL to write to (default: a throw-away local server)")
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    server = None
    dsn = args.dsn
    if dsn is None:
        sys.path.insert(0, str(REPO / "tests"))
        from postgres_server import remove_server, start_server

        server = start_server()
        dsn = server.dsn
    try:
        result = asyncio.run(main_async(dsn, args.records, args.batch, args.rounds))
    finally:
        if server is not None:
            remove_server(server)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
