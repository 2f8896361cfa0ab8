"""End-to-end latency's two ends: a producer offering transactions at a fixed rate with their
send time in them, and a probe reading the measured output from its end and recording now minus
that send time per record; and the nearest-rank percentile of the result. The latency phase that
runs a contender between them is in :mod:`benchmarks.measure`; soak, shadow and state runs use
the paced producer as their load."""

from __future__ import annotations

import asyncio
import math
import random
import time
import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from benchmarks.data import make_transaction
from benchmarks.kafka import PARTITIONS


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an ascending list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(round(q / 100 * len(sorted_values), 9)))  # round: 99.9 % of 1000 is 999
    return sorted_values[min(rank, len(sorted_values)) - 1]


class LatencyProbe:
    """Reads the measured output topic from its current end; records now - send time per record.

    Forwarding keeps the payload field ``bench_sent_ns`` (time.time_ns() just before the
    producer's send, i.e. the record's CreateTime to within microseconds); an output that is
    projected onto a schema keeps at least ``ts``, which the paced producer sets to the same
    instant in epoch ms.
    """

    def __init__(self, bootstrap: str, topic: str, isolation_level: str = "read_committed") -> None:
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=5,
            auto_offset_reset="earliest",
            # what an analyst reading committed data sees; the same as read_uncommitted for
            # contenders that do not write in transactions (read_uncommitted: benchmarks.latency_ab's
            # second probe, which sees a transaction's records once written)
            isolation_level=isolation_level,
        )
        self.topic = topic
        self.latencies_ms: list[float] = []
        self.warmup_seen = 0
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.consumer.start()
        tps = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
        self.consumer.assign(tps)
        # start at the current end: earlier outputs (a warm process's throughput phase) are not ours
        for tp, offset in (await self.consumer.end_offsets(tps)).items():
            self.consumer.seek(tp, offset)
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=100, max_records=10_000)
            now_ns = time.time_ns()
            for records in batches.values():
                for rec in records:
                    value = orjson.loads(rec.value)
                    txn_id = str(value.get("txn_id", ""))
                    if txn_id.startswith("W-"):
                        self.warmup_seen += 1
                    elif txn_id.startswith("L-"):
                        sent = value.get("bench_sent_ns")
                        sent_ns = int(sent) if sent is not None else int(value["ts"]) * 1_000_000
                        self.latencies_ms.append((now_ns - sent_ns) / 1e6)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.wait_for(self.consumer.stop(), 10)


class PacedProducer:
    """Offers transactions at a fixed rate; each carries its send instant in the payload."""

    def __init__(self, bootstrap: str, topic: str, profiles: list[dict[str, Any]], seed: int = 1) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0)
        self.topic = topic
        self.profiles = profiles
        self.rng = random.Random(seed)
        self.seq = 0
        self.tag = uuid.uuid4().hex[:8]
        self.pending: list[asyncio.Future] = []

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await asyncio.wait_for(self.producer.stop(), 15)

    async def send(self, prefix: str) -> None:
        sent_ns = time.time_ns()
        txn = make_transaction(self.rng, self.seq, self.profiles, sent_ns // 1_000_000, variants=False)
        txn["txn_id"] = f"{prefix}-{self.tag}-{self.seq:010d}"
        txn["bench_sent_ns"] = sent_ns
        self.seq += 1
        fut = await self.producer.send(self.topic, orjson.dumps(txn), key=txn["account_id"].encode())
        self.pending.append(fut)
        if len(self.pending) >= 5000:
            await self.flush()

    async def flush(self) -> None:
        await asyncio.wait_for(asyncio.gather(*self.pending), 30)
        self.pending.clear()

    async def run(self, rate: float, seconds: float, prefix: str = "L") -> tuple[int, float]:
        """Send ``rate`` records per second for ``seconds``; returns (sent, achieved rate)."""
        start = time.perf_counter()
        sent = 0
        while True:
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
            due = int(elapsed * rate) - sent
            for _ in range(due):
                await self.send(prefix)
            sent += max(0, due)
            await asyncio.sleep(0.001)
        offered = sent / (time.perf_counter() - start)  # before the final flush: what was offered
        await self.flush()
        return sent, offered
