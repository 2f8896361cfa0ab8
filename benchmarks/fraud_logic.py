"""The fraud rules of the reference topology (issue 3, part 5 a-h) as plain Python.

Used by the Quix Streams fraud contender, and by the harness to know how many records the
fraud contenders must emit for a data set. Kept free of any framework so both use the same
rules and the comparison with our engine is like for like.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime
from typing import Any

RATES = {"EUR": 1.0, "USD": 0.92, "GBP": 1.17, "CHF": 1.05, "JPY": 0.0062}
CHANNELS = {"card_present", "online", "atm"}
DEDUPE_HORIZON_MS = 24 * 3600 * 1000
VELOCITY_WINDOW_MS = 60_000
EMAIL_KEY = b"bench-mask-key"
_DIGITS = re.compile(r"\d+")


class Invalid(ValueError):
    """A record that goes to the DLQ; the message is the reason."""


def customer_id(value: Any) -> str:
    """123, "123", "C123" and "C-000123" all become "C-000123"."""
    if isinstance(value, bool) or value is None:
        raise Invalid("customer_id: missing or not an identifier")
    found = _DIGITS.findall(str(value))
    if not found:
        raise Invalid("customer_id: no digits")
    return f"C-{int(''.join(found)):06d}"


def epoch_ms(value: Any) -> int:
    """Epoch ms, epoch seconds or ISO-8601 with an offset, to epoch ms UTC."""
    if isinstance(value, bool):
        raise Invalid("ts: not a time")
    if isinstance(value, int | float):
        return int(value * 1000) if value < 100_000_000_000 else int(value)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return epoch_ms(float(text))
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise Invalid("ts: unparseable") from None
        if parsed.tzinfo is None:
            raise Invalid("ts: ISO-8601 without an offset")
        return int(parsed.timestamp() * 1000)
    raise Invalid("ts: not a time")


def harmonise(txn: dict[str, Any]) -> dict[str, Any]:
    """Rule a (and the checks of rule b): the canonical transaction, or Invalid."""
    if not isinstance(txn, dict):
        raise Invalid("not an object")
    out = dict(txn)
    for name in ("txn_id", "account_id", "merchant_id"):
        if not isinstance(txn.get(name), str) or not txn[name]:
            raise Invalid(f"{name}: missing or not a string")
    out["customer_id"] = customer_id(txn.get("customer_id"))
    currency = txn.get("currency")
    if not isinstance(currency, str) or currency.upper() not in RATES:
        raise Invalid("currency: unknown")
    out["currency"] = currency.upper()
    amount = txn.get("amount")
    try:
        amount = (
            float(amount) if isinstance(amount, int | float | str) and not isinstance(amount, bool) else None
        )
    except ValueError:
        amount = None
    if amount is None or amount != amount or amount <= 0:
        raise Invalid("amount: not a positive number")
    out["amount"] = amount
    if txn.get("channel") not in CHANNELS:
        raise Invalid("channel: unknown")
    country = txn.get("country")
    if not isinstance(country, str) or len(country.strip()) != 2:
        raise Invalid("country: not ISO 3166-1 alpha-2")
    out["country"] = country.strip().upper()
    out["ts"] = epoch_ms(txn.get("ts"))
    return out


def harmonise_customer(profile: dict[str, Any]) -> dict[str, Any]:
    out = dict(profile)
    out["customer_id"] = customer_id(profile.get("customer_id"))
    out["home_country"] = str(profile.get("home_country", "")).upper()
    return out


def velocity(window: list[int], ts: int) -> tuple[list[int], int]:
    """Rule f: add ts to an account's event times; count those in (ts - 60 s, ts]."""
    low = ts - VELOCITY_WINDOW_MS
    kept = [t for t in window if t > low - VELOCITY_WINDOW_MS]  # keep a margin for late events
    kept.append(ts)
    return kept, sum(1 for t in kept if low < t <= ts)


def score(txn: dict[str, Any], profile: dict[str, Any]) -> dict[str, Any]:
    """Rules d (the join), e, g: the enriched, scored record (email hashed, name left out).

    Rule names are those of topologies/fraud_detection.yaml.
    """
    out = dict(txn)
    amount_eur = round(txn["amount"] * RATES[txn["currency"]], 2)
    out["amount_eur"] = amount_eur
    out["home_country"] = profile.get("home_country")
    out["risk_tier"] = profile.get("risk_tier")
    out["avg_amount"] = profile.get("avg_amount")
    email = profile.get("email") or ""
    out["email"] = hmac.new(EMAIL_KEY, email.encode(), hashlib.sha256).hexdigest()  # as mask does
    total = 0.0
    reasons = []
    if amount_eur > 5 * float(profile.get("avg_amount") or 0):
        total += 0.4
        reasons.append("amount_over_5x_average")
    if txn.get("velocity_60s", 0) > 5:
        total += 0.3
        reasons.append("velocity_over_5_per_minute")
    if txn["country"] != profile.get("home_country"):
        total += 0.2
        reasons.append("foreign_country")
    tier = profile.get("risk_tier")
    if tier == "high":
        total += 0.2
        reasons.append("high_risk_customer")
    elif tier == "medium":
        total += 0.1
        reasons.append("medium_risk_customer")
    if txn["channel"] == "online" and amount_eur > 1000:
        total += 0.1
        reasons.append("large_online_amount")
    out["score"] = round(min(1.0, total), 2)
    out["reasons"] = reasons
    return out


def route(scored: dict[str, Any]) -> str:
    """Rule h: which of alerts / review / approved (enriched always)."""
    if scored["score"] >= 0.8:
        return "alert"
    if scored["score"] >= 0.5:
        return "review"
    return "approved"


def alert(scored: dict[str, Any]) -> dict[str, Any]:
    critical = scored["score"] >= 0.95 or scored["amount_eur"] >= 10_000
    return {
        "txn_id": scored["txn_id"],
        "account_id": scored["account_id"],
        "customer_id": scored["customer_id"],
        "amount_eur": scored["amount_eur"],
        "score": scored["score"],
        "reasons": scored["reasons"],
        "severity": "critical" if critical else "high",
        "ts": scored["ts"],
    }


def freeze(scored: dict[str, Any]) -> dict[str, Any]:
    return {
        "account_id": scored["account_id"],
        "action": "freeze",
        "txn_id": scored["txn_id"],
        "ts": scored["ts"],
    }


def expected_counts(transactions: list[dict[str, Any]]) -> tuple[int, int]:
    """(records reaching the enriched topic, records going to the DLQ as invalid).

    Enriched: valid and not a duplicate within 24 h. Every profile is published before the
    transactions, so no record waits for a late profile.
    """
    seen: dict[str, int] = {}
    enriched = invalid = 0
    for raw in transactions:
        try:
            txn = harmonise(raw)
        except Invalid:
            invalid += 1
            continue
        last = seen.get(txn["txn_id"])
        if last is not None and abs(txn["ts"] - last) < DEDUPE_HORIZON_MS:
            continue
        seen[txn["txn_id"]] = txn["ts"]
        enriched += 1
    return enriched, invalid
