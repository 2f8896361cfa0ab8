"""Contender: Quix Streams running the fraud logic of the reference topology.

Harmonise → dedupe by txn_id (24 h, Quix state) → velocity in 60 s per account (Quix state)
→ enrich from customer profiles → amount_eur, score → enriched + alerts/actions, review or
approved. The rules are ``benchmarks.fraud_logic``, shared with the harness. State uses
Quix's RocksDB stores with changelog topics, as a production app would. Profiles are read
from the customers topic into a dict before the app starts (the cheapest join Quix offers
here; a ``join_asof`` would need a repartition by customer_id). What this contender leaves
out, and the engine must do: retry topics for late profiles (an unknown customer goes straight
to the DLQ here) and lineage headers.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from confluent_kafka import Consumer, TopicPartition
from quixstreams import State

from benchmarks import env
from benchmarks import fraud_logic as fl
from benchmarks.contenders._quix_common import application


def load_customers(topic: str, timeout_s: float = 60.0) -> dict[str, dict[str, Any]]:
    """Read the compacted profile topic to its end: the latest profile per customer_id."""
    consumer = Consumer(
        {"bootstrap.servers": env.bootstrap(), "group.id": "unused", "enable.auto.commit": False}
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        tps = [TopicPartition(topic, p, 0) for p in meta.partitions]
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
        consumer.assign(tps)
        profiles: dict[str, dict[str, Any]] = {}
        done = {p for p, end in ends.items() if end == 0}
        deadline = time.monotonic() + timeout_s
        while len(done) < len(ends) and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, timeout=0.5):
                if msg.error():
                    continue
                try:
                    profile = fl.harmonise_customer(orjson.loads(msg.value()))
                    profiles[profile["customer_id"]] = profile
                except (fl.Invalid, orjson.JSONDecodeError):
                    pass
                if msg.offset() + 1 >= ends[msg.partition()]:
                    done.add(msg.partition())
        return profiles
    finally:
        consumer.close()


def make_processor(profiles: dict[str, dict[str, Any]]):
    def process(raw: bytes, state: State) -> dict[str, Any] | None:
        """Returns the scored record, a DLQ record, or None for a duplicate."""
        try:
            txn = fl.harmonise(orjson.loads(raw))
        except (fl.Invalid, orjson.JSONDecodeError, UnicodeDecodeError) as exc:
            return {"_dlq": True, "reason": str(exc), "original": raw.decode("utf-8", "replace")}
        seen_key = "t:" + txn["txn_id"]
        seen = state.get(seen_key)
        if seen is not None and abs(txn["ts"] - seen) < fl.DEDUPE_HORIZON_MS:
            return None
        state.set(seen_key, txn["ts"])
        window, txn["velocity_60s"] = fl.velocity(state.get("v", []), txn["ts"])
        state.set("v", window)
        profile = profiles.get(txn["customer_id"])
        if profile is None:
            return {"_dlq": True, "reason": "unknown_customer", "original": raw.decode("utf-8", "replace")}
        scored = fl.score(txn, profile)
        scored["_route"] = fl.route(scored)
        return scored

    return process


def main() -> None:
    profiles = load_customers(env.get(env.CUSTOMERS))
    app = application()
    source = app.topic(env.get(env.INPUT), key_deserializer="bytes", value_deserializer="bytes")

    def out(var: str):
        return app.topic(env.get(var), key_serializer="bytes", value_serializer="json")

    sdf = app.dataframe(source)
    sdf = sdf.apply(make_processor(profiles), stateful=True)
    sdf = sdf.filter(lambda r: r is not None)
    sdf[sdf.apply(lambda r: "_dlq" in r)].to_topic(out(env.DLQ))
    ok = sdf[sdf.apply(lambda r: "_dlq" not in r)]
    ok.apply(lambda r: {k: v for k, v in r.items() if k != "_route"}).to_topic(out(env.ENRICHED))
    alerts = ok[ok.apply(lambda r: r["_route"] == "alert")]
    alerts.apply(fl.alert).to_topic(out(env.ALERTS))
    alerts.apply(fl.freeze).to_topic(out(env.ACTIONS))
    review = ok[ok.apply(lambda r: r["_route"] == "review")]
    review.apply(lambda r: {k: v for k, v in r.items() if k != "_route"}).to_topic(out(env.REVIEW))
    approved = ok[ok.apply(lambda r: r["_route"] == "approved")]
    approved.apply(lambda r: {k: v for k, v in r.items() if k != "_route"}).to_topic(out(env.APPROVED))
    app.run()


if __name__ == "__main__":
    main()
