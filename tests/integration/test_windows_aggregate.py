"""A window with several results (issue 20, part 3) against the real broker, with a real worker.

Records of 3 partitions, some late beyond grace, go through a tumbling window under
exactly_once with `aggregate: {n: count, first_i: {first: i}, last_i: {last: i}, total: {sum:
amount}, hubs: {count_distinct: hub}}`; the reference is computed here from the input as the
broker partitioned it, from the definitions (a record is in window [s, s + size) unless its
partition's watermark, this record included, had reached s + size + grace; first/last by event
time, ties by arrival). The test deletes its topics.
"""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from ruamel.yaml import YAML

from tests import reliability_harness as rh
from tests.integration.test_windows_emit import FAR, PARTITIONS, T0, M, by_partition, flush_keys, start
from tests.topology_harness import BOOTSTRAP

pytestmark = pytest.mark.integration

AGGREGATE = {
    "n": "count",
    "first_i": {"first": "i"},
    "last_i": {"last": "i"},
    "total": {"sum": "amount"},
    "hubs": {"count_distinct": "hub"},
}


def topology(tmp_path: Path, suffix: str) -> tuple[Path, dict[str, str], str]:
    name = f"winagg_{suffix}"
    t = {n: f"{n}.{suffix}" for n in ("scans", "scans.dlq", "per_minute")}
    doc: dict[str, Any] = {
        "topology": name,
        "processing": "exactly_once",
        "topics": {
            t["scans"]: {"partitions": PARTITIONS, "key": "merchant_id"},
            t["scans.dlq"]: {"partitions": PARTITIONS},
            t["per_minute"]: {"partitions": PARTITIONS, "key": "merchant_id"},
        },
        "tables": {"minutes": {}},
        "nodes": {
            "per_minute": {
                "input": t["scans"],
                "batch_size": 300,
                "steps": [
                    {
                        "step": "window",
                        "table": "minutes",
                        "key": "merchant_id",
                        "kind": "tumbling",
                        "size": "1m",
                        "grace": "30s",
                        "aggregate": AGGREGATE,
                    }
                ],
                "routes": [{"to": t["per_minute"]}],
                "errors": {"dlq": t["scans.dlq"]},
            }
        },
    }
    path = tmp_path / "winagg.yaml"
    with path.open("w") as fh:
        YAML().dump(doc, fh)
    return path, t, name


def scans(n: int, seed: int) -> list[dict[str, Any]]:
    """Records ~1 s apart; every 9th up to 3 min behind (inside and beyond the 30 s grace)."""
    rng = random.Random(seed)
    out, now = [], T0
    for i in range(n):
        now += rng.randrange(0, 2000)
        ts = now - rng.randrange(0, 180_000) if i % 9 == 0 else now
        out.append(
            {"merchant_id": f"M-{rng.randrange(12):03d}", "ts": ts, "i": i, "hub": f"H{rng.randrange(5)}",
             "amount": rng.randrange(1, 100)}
        )  # fmt: skip
    return out


def reference(parts: dict[int, list[dict]], size: int, grace: int) -> tuple[dict, int]:
    """({(merchant, start): results} of the windows closed, late records)."""
    closed, late = {}, 0
    for records in parts.values():
        members: dict[tuple[str, int], list[tuple[int, dict]]] = defaultdict(list)
        watermark = -1
        for arrival, r in enumerate(records):
            t = r["ts"]
            watermark = max(watermark, t)
            s = t - t % size
            if s + size + grace > watermark:
                members[(r["merchant_id"], s)].append((arrival, r))
            else:
                late += 1
        for (k, s), rs in members.items():
            if s + size + grace <= watermark:
                first = min(rs, key=lambda x: (x[1]["ts"], x[0]))[1]
                last = max(rs, key=lambda x: (x[1]["ts"], x[0]))[1]
                closed[(k, s)] = {
                    "n": len(rs),
                    "first_i": first["i"],
                    "last_i": last["i"],
                    "total": sum(r["amount"] for _, r in rs),
                    "hubs": len({r["hub"] for _, r in rs}),
                }
    return closed, late


async def delete_topics(suffix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if suffix in t]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


async def test_a_window_with_several_results_equals_the_reference(tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    path, t, name = topology(tmp_path, suffix)
    records = scans(4000, seed=20)
    flush = [{"merchant_id": k.decode(), "ts": FAR, "i": -1, "hub": "-", "amount": 0} for k in flush_keys()]
    try:
        w = await start(tmp_path, path, name, ["per_minute"])
        try:
            coords = await rh.produce_bulk(
                t["scans"], [(r["merchant_id"].encode(), orjson.dumps(r)) for r in records + flush]
            )
            parts = by_partition(records + flush, coords)
            expected, late = reference(parts, M, 30_000)
            assert late > 30 and len(expected) > 300
            async with rh.Watcher([t["per_minute"]]) as watch:
                done = await watch.wait(
                    lambda x: x.count(t["per_minute"]) >= len(expected), timeout=120, settle=2.0
                )
                assert done, (watch.count(t["per_minute"]), len(expected), w.log())
            got = [orjson.loads(r.value) for r in watch.records[t["per_minute"]]]
            assert len(got) == len(expected), "each window emitted once"
            assert {
                (r["merchant_id"], r["window_start"]): {k: r[k] for k in AGGREGATE} for r in got
            } == expected
            assert all(r["window_end"] == r["window_start"] + M for r in got)
            assert w.terminate() == 0
        finally:
            w.stop()
    finally:
        await delete_topics(suffix)
