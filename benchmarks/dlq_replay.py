"""`stream-orch dlq replay` over large DLQs: peak RSS and throughput of the real CLI process.

    python -m benchmarks.dlq_replay --records 100000 1000000 [--chunk-size N] [--value-bytes B]

For each size: a DLQ of ``--records`` dead letters (three partitions, ``so.error.*`` headers, a
JSON value of about ``--value-bytes``) is written to the local broker, then ``stream-orch dlq
replay DLQ --group <fresh ledger>`` runs as its own process and publishes every dead letter to a
target topic (three partitions). Its RSS is sampled every 50 ms from /proc; the peak is the
kernel's high-water mark (VmHWM) read last before the process exits. Throughput is dead letters
per second of the replay's wall time (start of the process to its exit: the ledger read, the
DLQ read, the transactions). A second run on the same ledger checks that it publishes nothing.
The topics are deleted afterwards. Results: ``benchmarks/results/dlq-replay-latest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from benchmarks.machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "dlq-replay-latest.json"
BOOTSTRAP = os.environ.get("STREAM_ORCH_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
CLI = [str(Path(sys.executable).parent / "stream-orch")]


async def _admin(create: list[str] | None = None, delete: list[str] | None = None) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, request_timeout_ms=60_000)
    await admin.start()
    try:
        if create:
            await admin.create_topics([NewTopic(t, 3, 1) for t in create])
        if delete:
            with contextlib.suppress(Exception):
                await admin.delete_topics(delete)
    finally:
        await admin.close()


async def write_dlq(topic: str, target: str, records: int, value_bytes: int) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP, acks="all", linger_ms=20, max_batch_size=1024 * 1024
    )
    await producer.start()
    started = time.monotonic()
    pad = "x" * max(0, value_bytes - 60)
    try:
        pending: list[asyncio.Future[Any]] = []
        for i in range(records):
            headers = [
                ("so.error.reason", b"unknown_customer"),
                ("so.error.class", b"unknown_customer"),
                ("so.error.topic", target.encode()),
                ("so.error.partition", str(i % 6).encode()),
                ("so.error.offset", str(i).encode()),
                ("so.error.attempts", b"4"),
            ]
            value = orjson.dumps({"txn_id": f"T{i:09d}", "amount": i % 1000, "pad": pad})
            pending.append(
                await producer.send(topic, value=value, key=f"A{i % 5000}".encode(), headers=headers)
            )
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.monotonic() - started


def _status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])  # kB
    return out


def run_replay(args: list[str]) -> dict[str, Any]:
    env = {**os.environ, "STREAM_ORCH_BOOTSTRAP_SERVERS": BOOTSTRAP}
    started = time.monotonic()
    proc = subprocess.Popen([*CLI, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    samples: list[tuple[float, int]] = []
    hwm = 0
    while proc.poll() is None:
        st = _status(proc.pid)
        if "VmRSS" in st:
            samples.append((time.monotonic() - started, st["VmRSS"]))
            hwm = max(hwm, st.get("VmHWM", 0))
        time.sleep(0.05)
    wall = time.monotonic() - started
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"replay failed ({proc.returncode}): {err.decode()[-2000:]}")
    rss = [kb for _, kb in samples]
    # RSS over the run's middle and last tenths: flat means the end is no higher than the middle
    tenth = max(1, len(rss) // 10)
    return {
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(max(hwm, *rss) / 1024, 1),
        "rss_mid_mb": round(max(rss[len(rss) // 2 - tenth // 2 : len(rss) // 2 + tenth // 2 + 1]) / 1024, 1),
        "rss_last_tenth_mb": round(max(rss[-tenth:]) / 1024, 1),
        "samples": len(rss),
        "stdout": out.decode().strip(),
    }


async def bench(records: int, chunk: int | None, value_bytes: int) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    target = group = f"bench-replay-{run}"
    dlq = f"{target}.dlq"  # the default name: --to original may write to target
    await _admin(create=[dlq, target])
    try:
        write_s = await write_dlq(dlq, target, records, value_bytes)
        args = ["dlq", "replay", dlq, "--group", group] + (["--chunk-size", str(chunk)] if chunk else [])
        first = await asyncio.to_thread(run_replay, args)
        again = await asyncio.to_thread(run_replay, args)
        assert f"published {records} " in first["stdout"], first["stdout"]
        assert "published 0 " in again["stdout"], again["stdout"]
        result = {
            "records": records,
            "value_bytes": value_bytes,
            "chunk_size": chunk,
            "dlq_write_s": round(write_s, 1),
            "replay": first,
            "dead_letters_per_s": round(records / first["wall_s"]),
            "second_run": {k: again[k] for k in ("wall_s", "peak_rss_mb", "stdout")},
        }
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode(), flush=True)
        return result
    finally:
        await _admin(delete=[dlq, target, f"stream-orch-replay.{group}"])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--chunk-size", type=int, default=None, help="default: the CLI's")
    parser.add_argument("--value-bytes", type=int, default=250)
    args = parser.parse_args()
    results = [await bench(n, args.chunk_size, args.value_bytes) for n in args.records]
    doc = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores",
        "python": sys.version.split()[0],
        "results": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    for r in results:
        rep = r["replay"]
        print(
            f"{r['records']:>9,} dead letters: {r['dead_letters_per_s']:,}/s, "
            f"peak RSS {rep['peak_rss_mb']} MB "
            f"(mid {rep['rss_mid_mb']}, last tenth {rep['rss_last_tenth_mb']}); "
            f"second run {r['second_run']['wall_s']} s, peak RSS {r['second_run']['peak_rss_mb']} MB"
        )


if __name__ == "__main__":
    asyncio.run(main())
