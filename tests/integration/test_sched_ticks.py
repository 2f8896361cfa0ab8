"""Scheduled nodes on the real broker, run by worker processes: a tick fires once per period
across all workers, is never fired twice after a kill -9, none is lost with ``catch_up: all``,
and ``catch_up: latest`` fires exactly one tick for the periods it missed. Every tick's outputs
are compared with a reference computed from the table rows the test put in."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka_helpers import create_topic

from tests import reliability_harness as rh
from tests import topology_harness as th

pytestmark = pytest.mark.integration

PERIOD_MS = 2000
ROWS = [{"sku": f"p{i:02d}", "qty": i, "reorder_point": 10} for i in range(20)]
BAD_ROW = (b"p99", b"{not json")  # untrusted table bytes: skipped and counted, every tick goes on
EXPECTED = sorted(r["sku"] for r in ROWS if r["qty"] < r["reorder_point"])  # the reference


def _doc(catch_up: str) -> dict[str, Any]:
    return {
        "topology": "sched",
        "processing": "exactly_once",
        "topics": {
            "stock": {"partitions": 2, "key": "sku"},
            "reorder": {"partitions": 2, "key": "sku"},
            "reorder.dlq": {"partitions": 1},
        },
        "tables": {"stock": {"topic": "stock"}},
        "nodes": {
            "work": {
                "schedule": {"every": "2s", "catch_up": catch_up, "scan": ["stock"]},
                "steps": [{"step": "filter", "when": "qty < reorder_point"}],
                "routes": [{"to": "reorder"}],
                "errors": {"dlq": "reorder.dlq"},
            }
        },
    }


def _per_tick(records: list[Any]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for r in records:
        value = orjson.loads(r.value)
        out.setdefault(value["tick_time"], []).append(value["sku"])
    return {t: sorted(skus) for t, skus in sorted(out.items())}


def _check_each_tick_once(ticks: dict[int, list[str]]) -> None:
    """Every tick fired emitted the reference rows exactly once (none twice, none missing)."""
    wrong = {t: Counter(skus) for t, skus in ticks.items() if skus != EXPECTED}
    assert not wrong, f"ticks whose outputs differ from the reference {EXPECTED}: {wrong}"


async def _setup(tmp_path: Path, catch_up: str) -> tuple[Path, dict[str, str], str]:
    path, names, group = rh.topology_copy(tmp_path, _doc(catch_up))
    for topic in ("stock", "reorder"):  # as declared (a produce would create them with one)
        await create_topic(th.BOOTSTRAP, names[topic], partitions=2)
    rows = [(r["sku"].encode(), orjson.dumps(r)) for r in ROWS]
    await th.produce_raw(names["stock"], [*rows, BAD_ROW])
    return path, names, group


def _ticks_topic(group: str) -> str:
    return f"{group}.ticks"  # <topology>.<node>.ticks; the group is <topology>.<node>


async def test_a_kill_9_fires_no_tick_twice_and_catch_up_all_loses_none(tmp_path: Path) -> None:
    path, names, _group = await _setup(tmp_path, "all")
    first = rh.worker(path, tmp_path / "w1.log").start()
    second = rh.worker(path, tmp_path / "w2.log")
    out = names["reorder"]
    try:
        async with rh.Watcher([out]) as watch:
            assert await watch.wait(lambda w: len(_per_tick(w.records[out])) >= 3, timeout=90), first.log()
            first.kill()  # mid-period, maybe mid-transaction
            killed_at = time.time() * 1000
            await asyncio.sleep(3 * PERIOD_MS / 1000)  # ticks fall due while nobody runs the node
            second.start()
            assert await watch.wait(
                lambda w: max(_per_tick(w.records[out]), default=0) > killed_at + 4 * PERIOD_MS, timeout=90
            ), second.log()
            second.terminate()
            await watch.poll(2)
            ticks = _per_tick(watch.records[out])
    finally:
        first.stop()
        second.stop()
    _check_each_tick_once(ticks)
    fired = list(ticks)
    expected = list(range(fired[0], fired[-1] + 1, PERIOD_MS))  # every tick of the wall-clock window
    lost = sorted(set(expected) - set(fired))
    rh.record_result(
        "scheduled node, kill -9, catch_up all",
        ticks=len(fired),
        lost=len(lost),
        duplicated=sum(len(s) - len(EXPECTED) for s in ticks.values() if len(s) > len(EXPECTED)),
    )
    assert not lost, f"ticks lost across the kill -9: {lost}"
    assert any(killed_at < t < killed_at + 3 * PERIOD_MS for t in fired)  # fired by the catch-up


async def test_two_workers_fire_one_tick_per_period(tmp_path: Path) -> None:
    # catch_up all: a tick due while the group rebalances (the second worker joining) is fired
    # late, not lost, so every period must show exactly one tick however slow the machine
    path, names, _group = await _setup(tmp_path, "all")
    workers = [rh.worker(path, tmp_path / f"w{i}.log").start() for i in (1, 2)]
    out = names["reorder"]
    try:
        async with rh.Watcher([out]) as watch:
            started = time.time() * 1000
            assert await watch.wait(
                lambda w: len([t for t in _per_tick(w.records[out]) if t > started + 10_000]) >= 4,
                timeout=120,
            ), workers[0].log() + workers[1].log()
            ticks = _per_tick(watch.records[out])
            assert all(w.proc is not None and w.proc.poll() is None for w in workers)  # both ran
    finally:
        for w in workers:
            w.stop()
    _check_each_tick_once(ticks)  # each period's tick fired by one worker only, once
    fired = list(ticks)
    assert fired == list(range(fired[0], fired[-1] + 1, PERIOD_MS))  # and none missing


async def test_catch_up_latest_fires_one_tick_for_three_missed_periods(tmp_path: Path) -> None:
    path, names, group = await _setup(tmp_path, "latest")
    first = rh.worker(path, tmp_path / "w1.log").start()
    second = rh.worker(path, tmp_path / "w2.log", metrics_port=th.free_port())
    out, ticks_topic = names["reorder"], _ticks_topic(group)
    try:
        async with rh.Watcher([out]) as watch:
            assert await watch.wait(lambda w: len(_per_tick(w.records[out])) >= 2, timeout=90), first.log()
            assert first.terminate() == 0
            await watch.poll(1)
            last_before = max(_per_tick(watch.records[out]))
            await asyncio.sleep(4 * PERIOD_MS / 1000)  # 3+ periods with no worker
            second.start()
            assert await watch.wait(
                lambda w: max(_per_tick(w.records[out])) > last_before + 5 * PERIOD_MS, timeout=90
            ), second.log()
            ticks = _per_tick(watch.records[out])
        samples = await th.scrape(second.url)
        async with rh.Watcher([ticks_topic]) as tick_log:
            await tick_log.poll(2)
            announced = sorted({orjson.loads(r.value)["tick"] for r in tick_log.records[ticks_topic]})
    finally:
        first.stop()
        second.stop()
    _check_each_tick_once(ticks)
    skipped = ("stream_orch_global_table_skipped_rows_total", (("reason", "undecodable"), ("table", "stock")))
    assert samples.get(skipped) == 1, {k: v for k, v in samples.items() if "skipped" in k[0]}
    after = [t for t in ticks if t > last_before]
    gap = after[0] - last_before
    assert gap >= 4 * PERIOD_MS, f"the worker was down {gap} ms only"
    # the first tick record the second worker wrote announced the latest tick due when it took
    # the node over: the periods missed before it fired once, as that one tick
    taken_over = min(t for t in announced if t > last_before)
    assert after[0] == taken_over
    assert after == list(range(after[0], after[-1] + 1, PERIOD_MS))  # then one tick per period
    # the second worker's metrics count what it fired (the scrape came after the records read)
    node = (("node", "work"),)
    assert samples[("stream_orch_schedule_ticks_fired_total", node)] >= len(after)
    assert samples[("stream_orch_schedule_last_tick_timestamp_seconds", node)] >= after[-1] / 1000
    rh.record_result("scheduled node, catch_up latest after 3+ missed periods", missed=gap // PERIOD_MS - 1)
