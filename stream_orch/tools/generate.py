"""A reproducible generator of customer profiles and transactions with known fraud patterns.

The same seed (and ``start_ms``) gives the same records in the same order, so a test or a
benchmark can count on what each pattern should produce. Patterns and their shares of the
transactions:
bursts (an account spending more than 5 times in a minute), large amounts (over 5 times the
customer's average), foreign countries, duplicates (the same txn_id again), invalid records
(bad fields, malformed JSON, bytes that are not UTF-8) and late profiles (a customer's profile
published after its first transactions, so the retry tiers have work to do).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import orjson

COUNTRIES = ["DE", "FR", "NL", "ES", "IT", "GB", "CH", "US", "JP", "PL"]
CURRENCY_OF = {
    "DE": "EUR",
    "FR": "EUR",
    "NL": "EUR",
    "ES": "EUR",
    "IT": "EUR",
    "PL": "EUR",
    "GB": "GBP",
    "CH": "CHF",
    "US": "USD",
    "JP": "JPY",
}
RATE_TO_EUR = {"EUR": 1.0, "USD": 0.92, "GBP": 1.17, "CHF": 1.05, "JPY": 0.0062}
CHANNELS = ["card_present", "online", "atm"]
TIERS = ["low"] * 6 + ["medium"] * 3 + ["high"]


@dataclass(frozen=True)
class Shares:
    burst: float = 0.03
    large: float = 0.02
    foreign: float = 0.05
    duplicate: float = 0.01
    invalid: float = 0.01
    late_profiles: float = 0.02  # share of customers whose profile comes late


@dataclass
class Record:
    topic: str
    key: bytes | None
    value: bytes


@dataclass
class Plan:
    """What was generated, by pattern: what a consumer of the outputs should expect."""

    customers: int = 0
    transactions: int = 0
    patterns: Counter[str] = field(default_factory=Counter)


def _customer_id_forms(n: int, rng: random.Random) -> object:
    """The same customer as producers spell it: 123, "123", "C123" or "C-000123"."""
    form = rng.randrange(4)
    return [n, str(n), f"C{n}", f"C-{n:06d}"][form]


def generate_fraud(
    customers: int,
    transactions: int,
    *,
    seed: int = 7,
    start_ms: int | None = None,
    customers_topic: str = "customers",
    transactions_topic: str = "transactions",
    shares: Shares = Shares(),
    labels: dict[str, str] | None = None,
) -> tuple[list[Record], Plan]:
    """Profiles first (except late ones), then transactions in event-time order.

    ``labels``, when given, receives each valid transaction's pattern by txn_id (``normal``,
    ``burst``, ``large_amount``, ``foreign_country``): the ground truth a model is trained on."""
    rng = random.Random(seed)
    if start_ms is None:  # event time starts now, so runs on one broker do not overlap
        start_ms = int(time.time() * 1000)
    plan = Plan(customers=customers)
    profiles: list[dict[str, object]] = []
    for n in range(1, customers + 1):
        home = rng.choice(COUNTRIES)
        profiles.append(
            {
                "customer_id": _customer_id_forms(n, rng),
                "name": f"Customer {n}",
                "email": f"customer{n}@example.com",
                "home_country": home.lower() if rng.random() < 0.2 else home,
                "risk_tier": rng.choice(TIERS),
                "avg_amount": round(rng.uniform(20, 400), 2),
            }
        )
    late = set(rng.sample(range(customers), int(customers * shares.late_profiles)))
    plan.patterns["late_profile"] = len(late)
    records: list[Record] = [
        Record(customers_topic, f"C-{i + 1:06d}".encode(), orjson.dumps(p))
        for i, p in enumerate(profiles)
        if i not in late
    ]
    late_pending = {i: False for i in late}
    ts = start_ms
    txn_no = 0
    emitted_ids: list[tuple[str, bytes, bytes]] = []
    while plan.transactions < transactions:
        i = rng.randrange(customers)
        profile = profiles[i]
        account = f"A-{i + 1:06d}"
        home = str(profile["home_country"]).upper()
        roll = rng.random()
        pattern = "normal"
        country = home
        amount = round(float(profile["avg_amount"]) * rng.uniform(0.2, 1.8), 2)  # type: ignore[arg-type]
        count = 1
        if roll < shares.burst:
            pattern, count = "burst", 7
        elif roll < shares.burst + shares.large:
            pattern = "large_amount"
            amount = round(float(profile["avg_amount"]) * rng.uniform(6, 40), 2)  # type: ignore[arg-type]
            if rng.random() < 0.6:  # stolen cards are mostly used abroad
                country = rng.choice([c for c in COUNTRIES if c != home])
        elif roll < shares.burst + shares.large + shares.foreign:
            pattern = "foreign_country"
            country = rng.choice([c for c in COUNTRIES if c != home])
        for _ in range(min(count, transactions - plan.transactions)):
            txn_no += 1
            ts += rng.randint(1, 400) if pattern != "burst" else 1000
            currency = CURRENCY_OF[country]
            txn = {
                "txn_id": f"T-{seed}-{txn_no:09d}",
                "account_id": account,
                "customer_id": _customer_id_forms(i + 1, rng),
                "amount": amount if rng.random() < 0.8 else str(amount),
                "currency": currency.lower() if rng.random() < 0.1 else currency,
                "merchant_id": f"M-{rng.randrange(5000):05d}",
                "channel": rng.choice(CHANNELS),
                "country": country,
                "ts": _timestamp_form(ts, rng),
            }
            invalid = rng.random() < shares.invalid
            if invalid:
                pattern_used = "invalid"
                value = _break(txn, rng)
            else:
                pattern_used = pattern
                value = orjson.dumps(txn)
            key = account.encode()
            records.append(Record(transactions_topic, key, value))
            plan.transactions += 1
            plan.patterns[pattern_used] += 1
            if not invalid:
                emitted_ids.append((txn["txn_id"], key, value))  # type: ignore[arg-type]
                if labels is not None:
                    labels[str(txn["txn_id"])] = pattern
            if not invalid and i in late_pending and not late_pending[i]:
                late_pending[i] = True
            if rng.random() < shares.duplicate and emitted_ids and plan.transactions < transactions:
                _, dkey, dvalue = emitted_ids[-1]
                records.append(Record(transactions_topic, dkey, dvalue))
                plan.transactions += 1
                plan.patterns["duplicate"] += 1
        # a late profile arrives a little after the customer's first transaction
        if txn_no % 200 == 0:
            records.extend(_release_late(late_pending, profiles, customers_topic))
    records.extend(_release_late(late_pending, profiles, customers_topic, everything=True))
    return records, plan


def _release_late(
    pending: dict[int, bool], profiles: list[dict[str, object]], topic: str, everything: bool = False
) -> Iterator[Record]:
    for i, seen in list(pending.items()):
        if seen or everything:
            del pending[i]
            yield Record(topic, f"C-{i + 1:06d}".encode(), orjson.dumps(profiles[i]))


def _timestamp_form(ts_ms: int, rng: random.Random) -> object:
    """Epoch ms mostly; some producers send epoch seconds or ISO-8601 with an offset."""
    form = rng.random()
    if form < 0.7:
        return ts_ms
    if form < 0.85:
        return ts_ms // 1000
    moment = datetime.fromtimestamp(ts_ms / 1000, tz=timezone(timedelta(hours=rng.choice([0, 1, -5]))))
    return moment.isoformat(timespec="milliseconds")


def _break(txn: dict[str, object], rng: random.Random) -> bytes:
    """One of the ways producers get records wrong."""
    kind = rng.randrange(6)
    bad = dict(txn)
    if kind == 0:
        del bad["txn_id"]
    elif kind == 1:
        bad["amount"] = -abs(float(bad["amount"]))  # type: ignore[arg-type]
    elif kind == 2:
        bad["currency"] = "XXX"
    elif kind == 3:
        bad["ts"] = "yesterday"
    elif kind == 4:
        return orjson.dumps(bad)[:-7]  # malformed JSON
    else:
        return b'{"txn_id": "\xff\xfe broken"}'  # not UTF-8
    return orjson.dumps(bad)
