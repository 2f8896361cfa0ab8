"""An interval join whose bound comes from each record (issue 20, part 3), on the real broker.

Shipments (the input) and deliveries (the other topic), 3 partitions each, co-partitioned by
parcel, go through a left join with `after: {field: promised_by, max: 3d}` under exactly_once: a
shipment matches the deliveries of its parcel with time in [ts, promised_by]. Both topics are
produced in event-time order from one producer (as in test_reconciliation.py); a record far ahead
on every partition of both topics then moves both sides' time past every bound. Every delivered
pair and every shipment without one equals a reference that pairs the records directly, once
each, and an unmatched shipment carries the delivery's declared field as null. The test deletes
its topics.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from ruamel.yaml import YAML

from stream_orch.runtime.output import murmur2
from tests import reliability_harness as rh
from tests.integration.test_windows_aggregate import delete_topics
from tests.topology_harness import wait_for_group

pytestmark = pytest.mark.integration

H = 3_600_000
D = 24 * H
T0 = 1_700_000_000_000
PARTITIONS = 3


def topology(tmp_path: Path, suffix: str) -> tuple[Path, dict[str, str], str]:
    name = f"joinbounds_{suffix}"
    t = {n: f"{n}.{suffix}" for n in ("shipments", "deliveries", "delivered", "missed", "shipments.dlq")}
    doc: dict[str, Any] = {
        "topology": name,
        "processing": "exactly_once",
        "topics": {
            t["shipments"]: {"partitions": PARTITIONS, "key": "parcel"},
            t["deliveries"]: {"partitions": PARTITIONS, "key": "parcel"},
            t["delivered"]: {"partitions": PARTITIONS, "key": "parcel"},
            t["missed"]: {"partitions": PARTITIONS, "key": "parcel"},
            t["shipments.dlq"]: {"partitions": PARTITIONS},
        },
        "tables": {"waiting": {}},
        "nodes": {
            "deadline": {
                "input": t["shipments"],
                "batch_size": 200,
                "steps": [
                    {
                        "step": "join",
                        "topic": t["deliveries"],
                        "table": "waiting",
                        "key": "parcel",
                        "after": {"field": "promised_by", "max": "3d"},
                        "how": "left",
                        "grace": "1h",
                        "fields": ["hub", "ts"],
                        "prefix": "d_",
                    }
                ],
                "routes": [
                    {"when": "join_status == 'unmatched'", "to": t["missed"]},
                    {"otherwise": True, "to": t["delivered"]},
                ],
                "errors": {"dlq": t["shipments.dlq"]},
            }
        },
    }
    path = tmp_path / "joinbounds.yaml"
    with path.open("w") as fh:
        YAML().dump(doc, fh)
    return path, t, name


def keys_per_partition(prefix: str) -> list[str]:
    """One key per partition (Kafka's default partitioner)."""
    keys: dict[int, str] = {}
    i = 0
    while len(keys) < PARTITIONS:
        key = f"{prefix}-{i}"
        keys.setdefault((murmur2(key.encode()) & 0x7FFFFFFF) % PARTITIONS, key)
        i += 1
    return list(keys.values())


def data(seed: int) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    shipments, deliveries = [], []
    for i in range(600):
        t = T0 + i * 10 * 60_000
        parcel = f"P{i:04d}"
        shipments.append({"parcel": parcel, "ts": t, "promised_by": t + rng.randrange(H, 2 * D)})
        for k in range(rng.choice([0, 1, 1, 1, 2])):  # some never delivered, some twice
            deliveries.append({"parcel": parcel, "ts": t + rng.randrange(0, 3 * D), "hub": f"H{i}-{k}"})
    return shipments, deliveries


async def test_a_left_join_bounded_by_each_shipments_promise_equals_the_reference(tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    path, t, name = topology(tmp_path, suffix)
    shipments, deliveries = data(20)
    expected = {
        (s["parcel"], d["hub"])
        for s in shipments
        for d in deliveries
        if d["parcel"] == s["parcel"] and s["ts"] <= d["ts"] <= s["promised_by"]
    }
    missed = {s["parcel"] for s in shipments} - {p for p, _ in expected}
    assert len(expected) > 150 and len(missed) > 150
    far = T0 + 400 * D
    flush = [(t["shipments"], {"parcel": k, "ts": far, "promised_by": far}) for k in keys_per_partition("FS")]
    flush += [(t["deliveries"], {"parcel": k, "ts": far, "hub": "-"}) for k in keys_per_partition("FD")]
    timeline = sorted(
        [(r["ts"], 0, t["shipments"], r) for r in shipments]
        + [(r["ts"], 1, t["deliveries"], r) for r in deliveries],
        key=lambda x: (x[0], x[1]),
    )
    try:
        w = rh.worker(path, tmp_path / "worker.log")
        w.start()
        try:
            await wait_for_group(f"{name}.deadline")
            async with rh.Watcher([t["delivered"], t["missed"], t["shipments.dlq"]]) as watch:
                producer = rh._producer(None, max_batch_size=256 * 1024)
                await producer.start()
                try:
                    sent = [
                        await producer.send(topic, value=orjson.dumps(r), key=r["parcel"].encode())
                        for _, _, topic, r in timeline
                    ]
                    await asyncio.gather(*sent)
                    sent = [
                        await producer.send(topic, value=orjson.dumps(r), key=r["parcel"].encode())
                        for topic, r in flush
                    ]
                    await asyncio.gather(*sent)
                finally:
                    await producer.stop()
                done = await watch.wait(
                    lambda x: (
                        x.count(t["delivered"]) >= len(expected) and x.count(t["missed"]) >= len(missed)
                    ),
                    timeout=120,
                    settle=2.0,
                )
                assert done, (
                    watch.count(t["delivered"]),
                    len(expected),
                    watch.count(t["missed"]),
                    len(missed),
                    w.log(),
                )
            delivered = [orjson.loads(r.value) for r in watch.records[t["delivered"]]]
            got = Counter((r["parcel"], r["d_hub"]) for r in delivered)
            assert set(got) == expected and max(got.values()) == 1, "each pair once"
            late = [orjson.loads(r.value) for r in watch.records[t["missed"]]]
            assert Counter(r["parcel"] for r in late) == Counter(missed), "each unmatched shipment once"
            assert all(
                r["d_hub"] is None and r["d_ts"] is None and r["join_status"] == "unmatched" for r in late
            )
            assert watch.count(t["shipments.dlq"]) == 0
            assert w.terminate() == 0
        finally:
            w.stop()
    finally:
        await delete_topics(suffix)
