"""Contender: Quix Streams reconciling payments with settlements, as ``topologies/reconciliation.yaml``.

``payments.join_interval(settlements, how="left", backward_ms=5 min, forward_ms=30 min)`` on event
time (the ``ts`` field, ``timestamp_extractor``), then the same routes as the engine's topology:
matched with equal amount and currency → reconciled, other currency or amount → mismatch
(``mismatch`` says which), no settlement within the bound → unreconciled with a severity by amount.
Output records have the engine's fields (the payment, ``settled_*``, ``join_status``, and
``severity`` or ``mismatch``). State in Quix's RocksDB stores with changelog topics.

Quix's left interval join cannot say "unmatched after the bound": it emits a payment *when it
arrives* (with no settlement if none has been read yet) and again, matched, when its settlement
comes. The closest equivalent built from Quix's own parts: matched records are routed at once (as
the engine does); every join output, stamped with its payment's time (``set_timestamp``), also
goes into a tumbling 1-minute window per payment_id with 30 min of grace, closed per partition
(``final(closing_strategy="partition")``): Quix closes it once the partition's time passes the
window's end + 30 min, i.e. between 30 and 31 min after the payment (the engine: 30 min after + 1
min grace, exactly); a window that saw no match is the unreconciled payment. (A session window per
payment would close at the exact bound, but Quix's per-partition session expiry sweeps every open
key on each advance: 175 events/s.) Differences that remain (benchmarks/README.md): Quix matches in
the order it reads, which is the order of the records' Kafka timestamps across the two topics
(Quix buffers the partitions of both and hands them out by timestamp), so the data must carry event
time as the record timestamp, as the harness writes it; and its bound runs on the time of this
partition's joined stream (payments' times), not on the settlements' time as the engine's does.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from benchmarks import env
from benchmarks.contenders._quix_common import application

MINUTE = 60_000
BEFORE, AFTER, GRACE = 5 * MINUTE, 30 * MINUTE, MINUTE  # as in topologies/reconciliation.yaml
FIELDS = ("settlement_id", "amount", "currency", "ts")


def event_time(value: Any, _headers: Any, timestamp: int, _type: Any) -> int:
    return int(value["ts"]) if isinstance(value, dict) and "ts" in value else timestamp


def merge(payment: dict[str, Any], settlement: dict[str, Any] | None) -> dict[str, Any]:
    out = dict(payment)
    if settlement is None:
        out["join_status"] = "unmatched"
    else:
        out.update({f"settled_{f}": settlement.get(f) for f in FIELDS})
        out["join_status"] = "matched"
    return out


def severity(amount: float) -> str:
    return "critical" if amount >= 10_000 else "high" if amount >= 1_000 else "low"


def mismatch(r: dict[str, Any]) -> str | None:
    if r["currency"] != r["settled_currency"]:
        return "currency"
    if abs(r["amount"] - r["settled_amount"]) >= 0.005:
        return "amount"
    return None


def without_flag(r: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in r.items() if k != "_mismatch"}


def main() -> None:
    app = application()

    def source(var: str):
        return app.topic(
            env.get(var), key_deserializer="bytes", value_deserializer="json", timestamp_extractor=event_time
        )

    def out(var: str):
        return app.topic(env.get(var), key_serializer="bytes", value_serializer="json")

    payments = app.dataframe(source(env.INPUT))
    settlements = app.dataframe(source(env.SETTLEMENTS))
    joined = payments.join_interval(
        settlements,
        how="left",
        on_merge=merge,
        grace_ms=timedelta(milliseconds=BEFORE + AFTER + 2 * GRACE),  # how long both sides are kept
        backward_ms=BEFORE,
        forward_ms=AFTER,
    )

    matched = joined[joined["join_status"] == "matched"]
    matched = matched.apply(lambda r: {**r, "_mismatch": mismatch(r)})
    bad = matched[matched["_mismatch"].notnull()]
    bad = bad.apply(lambda r: {**without_flag(r), "mismatch": r["_mismatch"]})
    bad.to_topic(out(env.MISMATCH))
    good = matched[matched["_mismatch"].isnull()]
    good.apply(without_flag).to_topic(out(env.RECONCILED))

    # unmatched after the bound: a window per payment on the payment's time (see the docstring)
    bound = joined.set_timestamp(lambda value, _key, _ts, _headers: int(value["ts"]))
    bound = bound.tumbling_window(timedelta(milliseconds=MINUTE), grace_ms=AFTER).reduce(
        reducer=lambda agg, r: {**agg, "join_status": "matched"} if r["join_status"] == "matched" else agg,
        initializer=lambda r: r,
    )
    bound = bound.final(closing_strategy="partition")
    bound = bound.apply(lambda w: w["value"])
    unmatched = bound[bound["join_status"] == "unmatched"]
    unmatched.apply(lambda r: {**r, "severity": severity(r["amount"])}).to_topic(out(env.UNRECONCILED))
    app.run()


if __name__ == "__main__":
    main()
