"""The benchmark data set: customer profiles and JSON transactions, produced once per run.

``stream-orch generate fraud`` is the project's generator; until it exists, ``make_dataset``
builds equivalent records here (same fields, a share of fraud patterns and of the input
variants the harmonise rule handles). Swap its body for a call to the real generator when it
lands; the harness only needs the records (to count the expected outputs) and the topics.
Pre-producing uses ``create_batch``/``send_batch`` per partition so that writing the data
takes a small fraction of the run.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from benchmarks.fraud_logic import expected_counts
from benchmarks.kafka import PARTITIONS

CURRENCIES = ("EUR", "EUR", "EUR", "USD", "USD", "GBP", "CHF", "JPY")
COUNTRIES = ("DE", "FR", "NL", "BE", "AT", "ES", "IT", "GB", "CH", "US")
CHANNELS = ("card_present", "card_present", "online", "online", "atm")
TIERS = ("low", "low", "low", "medium", "high")
_partitioner = DefaultPartitioner()


@dataclass
class Dataset:
    customers: list[dict[str, Any]]
    transactions: list[dict[str, Any]]
    expected_enriched: int = 0  # records the fraud contenders write to the enriched topic
    expected_invalid: int = 0  # records they write to the DLQ
    avg_bytes: float = 0.0
    source: str = "benchmarks.data (stand-in for `stream-orch generate fraud`)"
    meta: dict[str, Any] = field(default_factory=dict)


def _customer_id_variant(rng: random.Random, n: int) -> Any:
    """Mostly canonical ids, some in the other forms rule a harmonises."""
    r = rng.random()
    if r < 0.85:
        return f"C-{n:06d}"
    if r < 0.90:
        return n
    if r < 0.95:
        return str(n)
    return f"C{n}"


def make_customers(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(1, n + 1):
        out.append(
            {
                "customer_id": f"C-{i:06d}",
                "name": f"Customer {i}",
                "email": f"customer{i}@example.com",
                "home_country": rng.choice(COUNTRIES[:7]),
                "risk_tier": rng.choice(TIERS),
                "avg_amount": round(rng.uniform(20, 400), 2),
            }
        )
    return out


def make_transaction(
    rng: random.Random, seq: int, customers: list[dict[str, Any]], ts_ms: int, *, variants: bool = True
) -> dict[str, Any]:
    """One ~250-byte transaction; about 2 % large amounts, 5 % abroad, and input-format variants."""
    n = rng.randrange(1, len(customers) + 1)
    profile = customers[n - 1]
    amount: Any = round(rng.lognormvariate(3.5, 1.0), 2) + 0.01
    if rng.random() < 0.02:
        amount = round(rng.uniform(2_000, 15_000), 2)
    country = profile["home_country"] if rng.random() > 0.05 else rng.choice(COUNTRIES)
    currency = rng.choice(CURRENCIES)
    ts: Any = ts_ms
    if variants:
        r = rng.random()
        if r < 0.03:
            currency = currency.lower()
        elif r < 0.06:
            amount = str(amount)
        elif r < 0.08:
            ts = ts_ms / 1000
        elif r < 0.10:
            ts = datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat()
        elif r < 0.12:
            country = country.lower()
    return {
        "txn_id": f"T-{seed_hex(rng)}-{seq:010d}",
        "account_id": f"A-{n:07d}",
        "customer_id": _customer_id_variant(rng, n) if variants else f"C-{n:06d}",
        "amount": amount,
        "currency": currency,
        "merchant_id": f"M-{rng.randrange(1, 50_000):07d}",
        "channel": rng.choice(CHANNELS),
        "country": country,
        "ts": ts,
        "bench_sent_ns": time.time_ns(),
    }


def seed_hex(rng: random.Random) -> str:
    return f"{rng.getrandbits(64):016x}"


def make_dataset(transactions: int, customers: int | None = None, seed: int = 42) -> Dataset:
    """Profiles first, then transactions over the last hour of event time, with bursts."""
    customers = customers or max(100, transactions // 40)
    profiles = make_customers(customers, seed)
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    start = now - 3_600_000
    step = 3_600_000 / max(1, transactions)
    txns: list[dict[str, Any]] = []
    seq = 0
    while len(txns) < transactions:
        ts = int(start + seq * step)
        txn = make_transaction(rng, seq, profiles, ts)
        txns.append(txn)
        seq += 1
        if rng.random() < 0.003:  # a burst: several transactions of one account within a minute
            for j in range(rng.randrange(5, 10)):
                if len(txns) >= transactions:
                    break
                burst = dict(
                    make_transaction(rng, seq, profiles, ts + j * 2000),
                    account_id=txn["account_id"],
                    customer_id=txn["customer_id"],
                )
                txns.append(burst)
                seq += 1
    data = Dataset(profiles, txns)
    data.expected_enriched, data.expected_invalid = expected_counts(txns)
    sample = txns[: min(2000, len(txns))]
    data.avg_bytes = sum(len(orjson.dumps(t)) for t in sample) / max(1, len(sample))
    return data


def partition_for(key: bytes, partitions: int = PARTITIONS) -> int:
    """The Java client's murmur2 partitioner, so keyed state is co-partitioned as in production."""
    return _partitioner(key, list(range(partitions)), list(range(partitions)))


async def produce_records(
    bootstrap: str, topic: str, records: list[dict[str, Any]], key_field: str, partitions: int = PARTITIONS
) -> float:
    """Write records keyed by ``key_field`` in batches per partition; returns the seconds it took."""
    by_partition: list[list[tuple[bytes, bytes]]] = [[] for _ in range(partitions)]
    for rec in records:
        key = str(rec[key_field]).encode()
        by_partition[partition_for(key, partitions)].append((key, orjson.dumps(rec)))
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks=1, max_request_size=4 * 1024 * 1024, request_timeout_ms=30000
    )
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for p, items in enumerate(by_partition):
            batch = producer.create_batch()
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    pending.append(await producer.send_batch(batch, topic, partition=p))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            if batch.record_count():
                pending.append(await producer.send_batch(batch, topic, partition=p))
            if len(pending) > 64:
                await asyncio.wait_for(asyncio.gather(*pending), 60)
                pending.clear()
        await asyncio.wait_for(asyncio.gather(*pending), 60)
    finally:
        await producer.stop()
    return time.perf_counter() - started
