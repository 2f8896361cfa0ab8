"""Payments and settlements with a known reconciliation outcome, for ``topologies/reconciliation.yaml``.

Each payment gets one fate: settled within the bound with the same amount and currency
(``reconciled``; some settlements carry a time a few minutes *before* the booking, so both arrival
orders occur), settled with another amount or currency (``mismatch_amount``, ``mismatch_currency``),
never settled, or settled too late (both ``unreconciled``, with a severity by amount). Records of
both topics are published in event-time order with a little jitter (out of order within the
topology's grace). The same seed gives the same records.

An unmatched payment is only reported once event time on its partition passes its bound, so the
generator closes the run with one sentinel payment and settlement per partition, an hour past the
last record: they reconcile, and they carry every partition's watermark beyond every bound. The
plan counts them, so it is the exact ground truth of the topology's outputs.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson

from stream_orch.runtime.output import PartitionMap
from stream_orch.tools.generate import Record

MINUTE = 60_000
BOUND_AFTER, BOUND_BEFORE, GRACE = 30 * MINUTE, 5 * MINUTE, MINUTE  # as in reconciliation.yaml
CURRENCIES = ["EUR", "EUR", "EUR", "USD", "GBP", "CHF"]


@dataclass(frozen=True)
class Fates:
    early: float = 0.10  # settled within the bound, timed before the booking
    mismatch_amount: float = 0.05
    mismatch_currency: float = 0.03
    unsettled: float = 0.05
    late: float = 0.04  # settled, but after the bound: unreconciled


@dataclass
class ReconPlan:
    """The ground truth: payment ids per output topic of the reconciliation topology."""

    payments: int = 0
    settlements: int = 0
    outcome: dict[str, str] = field(default_factory=dict)  # payment_id -> reconciled|mismatch|unreconciled
    severity: dict[str, str] = field(default_factory=dict)  # unreconciled payment_id -> severity
    fates: Counter[str] = field(default_factory=Counter)

    def counts(self) -> dict[str, int]:
        return dict(Counter(self.outcome.values()))


def severity_of(amount: float) -> str:
    return "critical" if amount >= 10_000 else "high" if amount >= 1_000 else "low"


def generate_reconciliation(
    payments: int,
    *,
    seed: int = 7,
    start_ms: int | None = None,
    minutes: float = 120.0,
    partitions: int = 6,
    payments_topic: str = "payments",
    settlements_topic: str = "settlements",
    fates: Fates = Fates(),
) -> tuple[list[Record], ReconPlan]:
    """``payments`` payments spread over ``minutes`` of event time, their settlements, and the
    closing sentinels; returns the records in publishing order and the ground truth."""
    rng = random.Random(seed)
    if start_ms is None:
        start_ms = int(time.time() * 1000) - int(minutes * MINUTE)
    plan = ReconPlan()
    timed: list[tuple[int, Record]] = []
    span = int(minutes * MINUTE)
    for i in range(payments):
        pid = f"PAY-{seed}-{i:07d}"
        ts = start_ms + span * i // max(payments, 1)
        amount = round(rng.choice([rng.uniform(5, 900), rng.uniform(5, 900), rng.uniform(1_000, 9_000),
                                   rng.uniform(10_000, 50_000)]), 2)  # fmt: skip
        currency = rng.choice(CURRENCIES)
        payment = {"payment_id": pid, "account_id": f"ACC-{rng.randrange(1, 500):05d}",
                   "amount": amount, "currency": currency, "ts": ts}  # fmt: skip
        timed.append(
            (ts + rng.randrange(0, GRACE // 2), Record(payments_topic, pid.encode(), orjson.dumps(payment)))
        )
        fate = _fate(rng, fates)
        plan.fates[fate] += 1
        if fate == "unsettled":
            _unreconciled(plan, pid, amount)
            continue
        settled_at = {
            "early": ts - rng.randrange(0, BOUND_BEFORE - GRACE),
            "late": ts + BOUND_AFTER + rng.randrange(2 * GRACE, 30 * MINUTE),
        }.get(fate, ts + rng.randrange(0, BOUND_AFTER - GRACE))
        settled_amount, settled_currency = amount, currency
        if fate == "mismatch_amount":
            settled_amount = round(amount + rng.choice([-1, 1]) * rng.uniform(0.01, 50), 2)
        elif fate == "mismatch_currency":
            settled_currency = "USD" if currency != "USD" else "EUR"
        settlement = {"settlement_id": f"SET-{seed}-{i:07d}", "payment_id": pid, "amount": settled_amount,
                      "currency": settled_currency, "ts": settled_at}  # fmt: skip
        record = Record(settlements_topic, pid.encode(), orjson.dumps(settlement))
        timed.append((settled_at + rng.randrange(0, GRACE // 2), record))
        plan.settlements += 1
        if fate == "late":
            _unreconciled(plan, pid, amount)
        else:
            plan.outcome[pid] = "mismatch" if fate.startswith("mismatch") else "reconciled"
    plan.payments = payments
    close = max((t for t, _ in timed), default=start_ms) + 60 * MINUTE
    for pid in _one_key_per_partition(partitions, payments_topic, seed):
        base = {"payment_id": pid, "amount": 1.0, "currency": "EUR", "ts": close}
        timed.append(
            (close, Record(payments_topic, pid.encode(), orjson.dumps({**base, "account_id": "CLOSE"})))
        )
        settlement = {**base, "settlement_id": f"SET-{pid}"}
        timed.append((close + 1, Record(settlements_topic, pid.encode(), orjson.dumps(settlement))))
        plan.payments += 1
        plan.settlements += 1
        plan.outcome[pid] = "reconciled"
        plan.fates["sentinel"] += 1
    timed.sort(key=lambda item: item[0])
    return [r for _, r in timed], plan


def _fate(rng: random.Random, fates: Fates) -> str:
    roll = rng.random()
    for name in ("early", "mismatch_amount", "mismatch_currency", "unsettled", "late"):
        share = getattr(fates, name)
        if roll < share:
            return name
        roll -= share
    return "on_time"


def _unreconciled(plan: ReconPlan, pid: str, amount: float) -> None:
    plan.outcome[pid] = "unreconciled"
    plan.severity[pid] = severity_of(amount)


def _one_key_per_partition(partitions: int, topic: str, seed: int) -> list[str]:
    """Payment ids that the producers' partitioner puts on each partition, one per partition."""
    mapping = PartitionMap({topic: partitions})
    found: dict[int, str] = {}
    n = 0
    while len(found) < partitions:
        pid = f"CLOSE-{seed}-{n}"
        found.setdefault(mapping.of(topic, pid.encode()), pid)
        n += 1
    return [found[p] for p in sorted(found)]
