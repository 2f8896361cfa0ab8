"""``stream-orch ingest`` of a 1 M-row CSV against a plain batched aiokafka producer publishing
the same rows without validation, side by side in one run.

    python -m benchmarks.ingest_bench [--rows 1000000] [--rounds 3] [--out FILE.json]

Both read the same file (1 % bad rows, CRLF, multi-line quoted fields: benchmarks/ingest_data.py)
into a fresh 6-partition topic, keyless, acks=all, idempotent, 1 MiB batches. The plain producer
parses each row with the csv module and sends it as a JSON object of strings (no schema, no
rejects, no transactions). The ingest is the command's own code (``ingest_file``): schema
coercion and checks, the rejects file, a transaction and a ledger record per chunk
(``--chunk``, by default the command's).
Rounds alternate the two (ABAB...), each figure is the median with min-max; CPU is the
process's own CPU time (the broker runs on the same machine). The ingest's count of published
rows and rejects is checked against the reference each round.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from benchmarks.ingest_data import SCHEMA, Reference, write_csv
from benchmarks.machine import cpu_model
from stream_orch.codecs import JsonCodec
from stream_orch.settings import Settings
from stream_orch.tools.ingest.coerce import RowConformer
from stream_orch.tools.ingest.ledger import ledger_topic
from stream_orch.tools.ingest.publish import DEFAULT_CHUNK, Target, ingest_file
from stream_orch.tools.ingest.rejects import Rejects
from stream_orch.transport import clients

PARTITIONS = 6


async def plain_producer(settings: Settings, path: Path, topic: str) -> int:
    """The baseline: csv rows as JSON objects of strings, one send_batch per full batch."""
    producer: AIOKafkaProducer = clients.producer(settings.kafka_client_args(), linger_ms=5)
    await producer.start()
    sent = 0
    try:
        futures = []
        part = 0
        batch = producer.create_batch()
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            for row in reader:
                if not row:
                    continue
                value = orjson.dumps(dict(zip(header, row, strict=False)))
                if batch.append(key=None, value=value, timestamp=None) is None:
                    futures.append(await producer.send_batch(batch, topic, partition=part))
                    part = (part + 1) % PARTITIONS
                    batch = producer.create_batch()
                    batch.append(key=None, value=value, timestamp=None)
                sent += 1
        if batch.record_count():
            futures.append(await producer.send_batch(batch, topic, partition=part))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent


async def ingest(
    settings: Settings, path: Path, topic: str, ref: Reference, chunk: int = DEFAULT_CHUNK
) -> int:
    conformer = RowConformer(SCHEMA, topic)
    target = Target(topic, "csv", conformer, JsonCodec("ingest_payment"), chunk=chunk, quiet=True)
    rejects = Rejects()
    result = await ingest_file(settings, target, path, rejects)
    rejects.close()
    assert (result.published, result.rejected) == (ref.good, len(ref.rejects)), result
    return result.published


async def _topics(settings: Settings, create: list[str], delete: list[str]) -> None:
    admin = AIOKafkaAdminClient(**settings.kafka_client_args())
    await admin.start()
    try:
        if create:
            await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in create])
        if delete:
            await admin.delete_topics(delete)
    finally:
        await admin.close()


async def main(rows: int, rounds: int, out: Path | None, chunk: int = DEFAULT_CHUNK) -> dict[str, Any]:
    settings = Settings()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "payments.csv"
        ref = write_csv(path, rows)
        size = path.stat().st_size
        runs: dict[str, list[dict[str, float]]] = {"plain aiokafka producer": [], "stream-orch ingest": []}
        made: list[str] = []
        try:
            for i in range(rounds):
                for name in list(runs) if i % 2 == 0 else list(runs)[::-1]:
                    topic = f"bench-ingest-{uuid.uuid4().hex[:8]}"
                    made += [topic, ledger_topic(topic)]
                    await _topics(settings, [topic], [])
                    wall, cpu = time.perf_counter(), time.process_time()
                    if name.startswith("plain"):
                        n = await plain_producer(settings, path, topic)
                    else:
                        n = await ingest(settings, path, topic, ref, chunk)
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    runs[name].append({"rows": n, "seconds": wall, "rows_per_s": n / wall, "cpu_s": cpu})
                    rate = f"{n:,} rows in {wall:.1f}s = {n / wall:,.0f} rows/s, cpu {cpu:.1f}s"
                    print(f"round {i + 1} {name}: {rate}", flush=True)
        finally:
            await _topics(settings, [], made)
    summary = {
        name: {
            "rows_per_s": statistics.median(r["rows_per_s"] for r in rs),
            "min": min(r["rows_per_s"] for r in rs),
            "max": max(r["rows_per_s"] for r in rs),
            "cpu_s": statistics.median(r["cpu_s"] for r in rs),
        }
        for name, rs in runs.items()
    }
    plain, ing = summary["plain aiokafka producer"], summary["stream-orch ingest"]
    report = {
        "rows": rows, "chunk": chunk, "bad_rows": len(ref.rejects), "file_bytes": size, "rounds": rounds,
        "machine": f"{cpu_model()}, {__import__('os').cpu_count()} cores", "runs": runs, "summary": summary,
        "ratio": ing["rows_per_s"] / plain["rows_per_s"],
    }  # fmt: skip
    buf = io.StringIO()
    buf.write(f"\n{rows:,} CSV rows ({size / 1e6:.0f} MB, {len(ref.rejects):,} bad), {report['machine']}\n")
    for name, s in summary.items():
        buf.write(f"  {name:26} {s['rows_per_s']:>9,.0f} rows/s ({s['min']:,.0f}-{s['max']:,.0f}), "
                  f"CPU {s['cpu_s']:.1f} s\n")  # fmt: skip
    buf.write(f"  ratio ingest / plain: {report['ratio']:.2f}\n")
    print(buf.getvalue())
    if out is not None:
        out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help="ingest's rows per transaction")
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.rounds, args.out, args.chunk))
