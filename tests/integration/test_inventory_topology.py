"""The inventory topology (issue 22) against the real broker: a real worker keeps generated store
ledgers, and its outputs equal the generator's ground truth (the final level of every store +
product, every low-stock alert in order per store + product, the dead letters by reason, and the
reorder list of a tick after the last line), each counted movement's level once, steady and across
a kill -9 (exactly_once). The reorder node ticks every 2 s here (1 min in the file)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_orch.runtime.admin import TopicPlan, ensure_topics
from stream_orch.settings import Settings
from stream_orch.tools.generate_inventory import Topics, generate_inventory
from tests import reliability_harness as rh
from tests import topology_harness as th

pytestmark = pytest.mark.integration

KILL_AT = (400, 1000, 1600)  # levels written when a kill -9 comes
TABLE_TOPICS = ("inventory.stores", "inventory.products", "inventory.substitutes")
PERIOD_MS = 2000  # the reorder node's `every` in the test's copy


def _reorder_after(watch: rh.Watcher, topic: str, after_ms: int) -> tuple[int, list[dict[str, Any]]] | None:
    """The first tick at or after ``after_ms`` whose list is in (ticks write a tick's list in one
    transaction: a later tick seen means the earlier one is complete), by stock_key."""
    ticks: dict[int, list[dict[str, Any]]] = {}
    for r in watch.records[topic]:
        v = orjson.loads(r.value)
        ticks.setdefault(v.pop("tick_time"), []).append(v)
    later = sorted(t for t in ticks if t >= after_ms)
    if len(later) < 2:
        return None
    return later[0], sorted(ticks[later[0]], key=lambda v: v["stock_key"])


async def _produce_in_order(records: list) -> None:
    producer = rh._producer(None, max_batch_size=256 * 1024)
    await producer.start()
    try:
        sent = [await producer.send(r.topic, value=r.value, key=r.key) for r in records]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def _outcome(watch: rh.Watcher, t: dict[str, str]) -> dict[str, Any]:
    """What the topology wrote: the last level per key (its compacted table), the alerts per key
    in order, the dead letters by reason, and how often each movement's level was written."""
    levels: dict[str, int] = {}
    copies: Counter[str] = Counter()
    for r in watch.records[t["inventory.stock"]]:  # per key in the order written
        v = orjson.loads(r.value)
        levels[r.key.decode()] = v["level"]
        copies[v["movement_id"]] += 1
    alerts: dict[str, list[dict[str, Any]]] = {}
    for r in watch.records[t["inventory.alerts"]]:
        v = orjson.loads(r.value)
        alerts.setdefault(f"{v['store_id']}:{v['product_id']}", []).append(v)
    dlq = Counter(
        th.headers_of(r)["so.error.reason"].split(":")[0] for r in watch.records[t["inventory.movements.dlq"]]
    )
    return {"levels": levels, "copies": copies, "alerts": alerts, "dlq": dict(sorted(dlq.items()))}


@pytest.mark.parametrize("kill", [False, True], ids=["steady", "kill-9"])
async def test_inventory_outputs_equal_the_generator_s_ground_truth(tmp_path: Path, kill: bool) -> None:
    suffix = uuid.uuid4().hex[:8]
    path, t = th.isolated_topology(th.REPO / "topologies" / "inventory.yaml", tmp_path, suffix)
    text = path.read_text()
    assert "every: 1m" in text
    path.write_text(text.replace("every: 1m", f"every: {PERIOD_MS // 1000}s"))
    group = f"inventory_{suffix}.stock"
    records, plan = generate_inventory(
        3000,
        seed=13,
        topics=Topics(t["inventory.movements"], *(t[name] for name in TABLE_TOPICS)),
    )
    truth = plan.truth()
    tables = [r for r in records if r.topic != t["inventory.movements"]]
    lines = [r for r in records if r.topic == t["inventory.movements"]]
    # the tables are there before the worker starts (it loads global tables at start), as a
    # catalogue is before the shops open; a row arriving later is what the retry tiers are for
    settings = Settings()
    plans = [TopicPlan(t["inventory.movements"], 6)]
    plans += [TopicPlan(t[name], 3, compact=True) for name in TABLE_TOPICS]
    await ensure_topics(settings.kafka_client_args(), plans)
    await _produce_in_order(tables)
    w = rh.worker(path, tmp_path / "worker.log")
    watched = [t["inventory.stock"], t["inventory.alerts"], t["inventory.movements.dlq"]]
    reorder = t["inventory.reorder"]
    expected = truth["counted"] + plan.alert_count() + sum(truth["dlq"].values())
    scenario = "kill -9 mid-stream, 3 times" if kill else "steady"
    killed_at: list[int] = []
    try:
        w.start()
        await th.wait_for_group(group)
        started = time.monotonic()
        async with rh.Watcher([*watched, reorder]) as watch:
            if kill:  # lines flow in at 150/s as from live stores; kill -9 three times mid-stream
                # (20 s of input: three restarts of a few seconds each on a loaded machine fit in it)
                pairs = [(r.key, r.value) for r in lines]
                feed = asyncio.create_task(rh.produce_paced(t["inventory.movements"], pairs, rate=150))
                stock = t["inventory.stock"]
                for at in KILL_AT:
                    flowing = await watch.wait(lambda x, at=at: x.count(stock) >= at, timeout=60)
                    assert flowing, w.log()
                    assert not feed.done(), "killed after the input was all produced: not mid-stream"
                    w.kill()
                    killed_at.append(watch.count(t["inventory.stock"]))
                    w.start()
                assert None not in await feed
            else:
                await _produce_in_order(lines)
            done = await watch.wait(
                lambda x: sum(x.count(n) for n in watched) >= expected, timeout=120, settle=3.0
            )
            elapsed = time.monotonic() - started
            got = _outcome(watch, t)
            # every level is written; a tick two periods on scans the levels table once it has them
            after = int(time.time() * 1000) + 2 * PERIOD_MS
            await watch.wait(lambda x: _reorder_after(x, reorder, after) is not None, timeout=30)
            listed = _reorder_after(watch, reorder, after)
        counted_ids = set(got["copies"])
        rh.record_result(
            f"inventory: outputs equal the generator's ground truth ({scenario})",
            events_in=len(lines),
            counted=truth["counted"],
            levels_written=sum(got["copies"].values()),
            lost=truth["counted"] - len(counted_ids),
            duplicated_outputs=sum(n - 1 for n in got["copies"].values()),
            alerts_expected=plan.alert_count(),
            alerts=sum(len(a) for a in got["alerts"].values()),
            reorder_expected=len(truth["reorder"]),
            reorder=len(listed[1]) if listed else None,
            dlq_expected=truth["dlq"],
            dlq=got["dlq"],
            seconds=round(elapsed, 1),
            **({"levels_seen_at_kill": killed_at} if kill else {}),
        )
        assert done, f"{sum(got['copies'].values())} of {truth['counted']} levels\n{w.log()}"
        assert {m: n for m, n in got["copies"].items() if n > 1} == {}, "a movement counted twice"
        assert len(counted_ids) == truth["counted"], "a movement lost"
        assert got["levels"] == truth["stock"]
        assert got["alerts"] == truth["alerts"]
        assert got["dlq"] == truth["dlq"]
        assert listed is not None, f"no reorder tick after the run\n{w.log()}"
        assert listed[1] == truth["reorder"]
        assert w.terminate() == 0
    finally:
        w.stop()
