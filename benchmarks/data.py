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


# --------------------------------------------------------------------------- windows and joins


WINDOW_MS = 60_000  # the `window` kind: tumbling 1-minute count per merchant...
WINDOW_GRACE_MS = 5_000  # ...emitted on close, 5 s of grace (both contenders)
WINDOW_JITTER_MS = 3_000  # records run at most this far behind the newest: none is late
WINDOW_MERCHANTS = 200


@dataclass
class StreamDataset:
    """The input of a `window` or `join` run: raw records per input role, in publishing order.

    ``inputs`` maps a role (``input``, ``settlements``) to ``(key, value, event time)`` triples, written
    with the event time as the record's timestamp (what a producer stamping event time does; Quix
    reads the two sides of a join in timestamp order by it); ``events`` is
    the number of input records, ``expected_outputs`` the records the contenders must write to
    their counted topics in all, and ``reference`` what they must write (for the tests)."""

    kind: str
    inputs: dict[str, list[tuple[bytes, bytes, int]]]
    events: int
    expected_outputs: int
    reference: dict[Any, Any]
    avg_bytes: float = 0.0
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def events_per_output(self) -> float:
        return self.events / max(1, self.expected_outputs)


def _one_key_per_partition(prefix: str, partitions: int = PARTITIONS) -> list[str]:
    found: dict[int, str] = {}
    n = 0
    while len(found) < partitions:
        key = f"{prefix}-{n}"
        found.setdefault(partition_for(key.encode(), partitions), key)
        n += 1
    return [found[p] for p in sorted(found)]


def make_window_dataset(
    transactions: int, *, merchants: int = WINDOW_MERCHANTS, seed: int = 42, minutes: int | None = None
) -> StreamDataset:
    """Transactions keyed by merchant_id over ``minutes`` of event time (default: one minute per
    2,000 records, at least 5), slightly out of order (never by more than the grace, so no record is
    late), then one closing record per partition two minutes past the last window: it carries every
    partition's watermark beyond the last window's end + grace, so every window of the data closes.

    ``reference`` is the count per ``(merchant_id, window_start)`` of the data's records (the
    closing records' own windows never close and are not in it)."""
    rng = random.Random(seed)
    minutes = minutes or max(5, transactions // 2000)
    start = (int(time.time() * 1000) // WINDOW_MS - minutes - 10) * WINDOW_MS
    step = minutes * WINDOW_MS / max(1, transactions)
    profiles = make_customers(max(100, transactions // 40), seed)
    values: list[tuple[bytes, bytes, int]] = []
    reference: dict[tuple[str, int], int] = {}
    last = start
    for seq in range(transactions):
        base = int(start + seq * step)
        ts = max(start, base - rng.randrange(0, WINDOW_JITTER_MS))
        txn = make_transaction(rng, seq, profiles, ts, variants=False)
        txn["merchant_id"] = merchant = f"M-{rng.randrange(1, merchants + 1):05d}"
        values.append((merchant.encode(), orjson.dumps(txn), ts))
        window = ts - ts % WINDOW_MS
        reference[(merchant, window)] = reference.get((merchant, window), 0) + 1
        last = max(last, ts)
    close = last - last % WINDOW_MS + WINDOW_MS + WINDOW_GRACE_MS + 2 * WINDOW_MS
    for merchant in _one_key_per_partition("M-CLOSE"):
        txn = make_transaction(rng, 0, profiles, close, variants=False)
        txn.update(txn_id=f"T-{merchant}", merchant_id=merchant)
        values.append((merchant.encode(), orjson.dumps(txn), close))
    sample = values[: min(2000, len(values))]
    return StreamDataset(
        "window",
        {"input": values},
        events=len(values),
        expected_outputs=len(reference),
        reference=reference,
        avg_bytes=sum(len(v) for _, v, _ in sample) / max(1, len(sample)),
        source=f"benchmarks.data.make_window_dataset ({merchants} merchants, {minutes} min of event time)",
        meta={"minutes": minutes, "merchants": merchants, "closing_records": PARTITIONS},
    )


def make_join_dataset(payments: int, *, seed: int = 7, minutes: float | None = None) -> StreamDataset:
    """Payments and settlements of ``stream_orch.tools.generate_recon`` (its fates, event-time
    order with jitter, one closing sentinel pair per partition). ``events`` = payments +
    settlements; ``reference`` = the generator's ground truth, payment_id -> outcome."""
    from stream_orch.tools.generate_recon import generate_reconciliation

    minutes = minutes or max(120.0, payments / 500)
    # all of it in the past, sentinels included (an hour past the last record): Quix stamps its
    # outputs with the event time, and the broker refuses timestamps more than 1 h ahead
    start_ms = int(time.time() * 1000) - int((minutes + 240) * 60_000)
    records, plan = generate_reconciliation(
        payments, seed=seed, minutes=minutes, partitions=PARTITIONS, start_ms=start_ms
    )
    inputs: dict[str, list[tuple[bytes, bytes, int]]] = {"input": [], "settlements": []}
    for r in records:
        ts = orjson.loads(r.value)["ts"]
        inputs["input" if r.topic == "payments" else "settlements"].append((r.key, r.value, ts))
    sample = records[: min(2000, len(records))]
    return StreamDataset(
        "join",
        inputs,
        events=plan.payments + plan.settlements,
        expected_outputs=len(plan.outcome),
        reference={"outcome": plan.outcome, "severity": plan.severity},
        avg_bytes=sum(len(r.value) for r in sample) / max(1, len(sample)),
        source=f"stream_orch.tools.generate_recon ({minutes:g} min of event time, seed {seed})",
        meta={"payments": plan.payments, "settlements": plan.settlements, "expected": plan.counts()},
    )


async def produce_raw(
    bootstrap: str, topic: str, items: list[tuple[bytes, bytes, int]], partitions: int = PARTITIONS
) -> float:
    """``produce_records`` for records already encoded: (key, value, timestamp ms), order kept per
    partition, each record's timestamp its event time."""
    by_partition: list[list[tuple[bytes, bytes, int]]] = [[] for _ in range(partitions)]
    for key, value, ts in items:
        by_partition[partition_for(key, partitions)].append((key, value, ts))
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks=1, max_request_size=4 * 1024 * 1024, request_timeout_ms=30000
    )
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for p, part in enumerate(by_partition):
            batch = producer.create_batch()
            for key, value, ts in part:
                if batch.append(key=key, value=value, timestamp=ts) is None:
                    pending.append(await producer.send_batch(batch, topic, partition=p))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=ts)
            if batch.record_count():
                pending.append(await producer.send_batch(batch, topic, partition=p))
            if len(pending) > 64:
                await asyncio.wait_for(asyncio.gather(*pending), 60)
                pending.clear()
        await asyncio.wait_for(asyncio.gather(*pending), 60)
    finally:
        await producer.stop()
    return time.perf_counter() - started
