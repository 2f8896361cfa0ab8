"""Joins and the sliding aggregate on per-source watermarks (issue 20): a join side, or an
aggregate's input, written by a re-keying node of the topology takes its watermark as the minimum
over the writer's source partitions, as windows do. Run in the driver against brute-force
references; with ``watermarks: per_partition`` (the behaviour before) the same topologies lose
matches to `late_event` and expire partners early, so the tests prove the mechanism."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from step_harness import SCHEMAS, FakeContext, MemoryTable

from stream_orch.reliability import headers as H
from stream_orch.steps.base import Event
from stream_orch.steps.join import JoinStepImpl
from stream_orch.testing import TopologyTestDriver
from stream_orch.topology.models import TopologySpec

T0 = 1_700_000_040_000
M = 60_000
PARTS = 3
BEFORE, AFTER = 10_000, 20_000


# ---------------------------------------------------------------------------- the join step alone


class Clock:
    def __init__(self) -> None:
        self.ms = 5_000_000

    def __call__(self) -> int:
        return self.ms


def side(topic: str, src: str | None, t: int, offset: int, mark: int | None = None) -> Event:
    """A record of ``topic`` at ``t`` for order O1, from writer source ``src`` (its so.wm)."""
    headers = [] if src is None else [(H.WATERMARK, f"{src}/{t if mark is None else mark}".encode())]
    value = {"order": "O1", "ts": t, "amount": offset}
    return Event(value, b"O1", b"{}", headers, topic, 0, offset, t, 0, topic, 0, offset)


def join_step(clock: Clock) -> JoinStepImpl:
    return JoinStepImpl(
        topic="orders", table="w", key="order", after_ms=10_000, how="left", fields=["amount"],
        sources=(frozenset({"a/0", "a/1"}), frozenset()), clock=clock,
    )  # fmt: skip


async def test_a_lagging_source_keeps_its_records_on_time_across_a_restart_until_idle() -> None:
    clock, tables = Clock(), {"w": MemoryTable("w")}
    step, ctx = join_step(clock), FakeContext(tables)
    assert await step.run([side("scans", "a/0", T0 + 100_000, 1)], ctx) == []  # a/1 not heard yet
    # the order at 5 s still waits: the scans' time is the minimum, and a/1 has said nothing
    assert await step.run([side("orders", None, T0 + 5_000, 2)], ctx) == []
    # a new worker (the sources are in the table): a/1's scan at 4 s is on time and matches
    step, ctx = join_step(clock), FakeContext(tables)
    out = await step.run([side("scans", "a/1", T0 + 4_000, 3)], ctx)
    assert [(e.value["amount"], e.value["join_status"]) for e in out] == [(2, "matched")]
    assert ctx.dropped == []
    # a/1 falls silent while a/0 is heard every 5 s: after the idle timeout only a/0 counts, and
    # a scan behind it is late (silence is counted while the partition hears something)
    for _ in range(13):
        clock.ms += 5_000
        await step.run([side("scans", "a/0", T0 + 101_000, 4)], ctx)
    await step.run([side("scans", "a/0", T0 + 20_000, 5, mark=T0 + 101_000)], ctx)
    assert [why for _, why in ctx.dropped] == ["join_buffered"] * 13 + ["late_event"]


def join_topology(watermarks: str, rekeyed_right: bool) -> TopologySpec:
    """Scans (keyed by id) re-keyed by order into `scans.by_order`, joined there with the orders
    (keyed by order: piped directly, or re-keyed from `orders.raw` keyed by customer)."""
    rekey = {"batch_size": 40, "errors": {"dlq": "x.dlq"}}
    nodes: dict[str, Any] = {
        "scans_by_order": {**rekey, "input": "scans", "routes": [{"to": "scans.by_order"}]},
        "match": {
            "input": "scans.by_order",
            "watermarks": watermarks,
            "batch_size": 40,
            "steps": [
                {
                    "step": "join",
                    "topic": "orders",
                    "table": "waiting",
                    "key": "order",
                    "before": "10s",
                    "after": "20s",
                    "fields": ["amount"],
                }
            ],
            "routes": [{"to": "matched"}],
            "errors": {"dlq": "match.dlq"},
        },
    }
    if rekeyed_right:
        nodes["orders_by_order"] = {**rekey, "input": "orders.raw", "routes": [{"to": "orders"}]}
    return TopologySpec.model_validate(
        {
            "topology": "rekeyed_join",
            "topics": {
                "scans": {"partitions": PARTS, "key": "id"},
                "orders.raw": {"partitions": PARTS, "key": "customer"},
                "scans.by_order": {"partitions": PARTS, "key": "order"},
                "orders": {"partitions": PARTS, "key": "order"},
                "matched": {"partitions": PARTS, "key": "order"},
            },
            "tables": {"waiting": {}},
            "nodes": nodes,
        }
    )


def inputs(n: int, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Scans and orders in time order overall (each source partition in order), ~1 s apart."""
    rng = random.Random(seed)
    scans, orders, t = [], [], T0
    for i in range(n):
        t += rng.randrange(0, 2000)
        order = f"O{rng.randrange(8)}"
        if rng.random() < 0.5:
            scans.append({"id": f"S{i}", "order": order, "ts": t})
        else:
            orders.append({"order": order, "customer": f"C{rng.randrange(500)}", "ts": t, "amount": i})
    return scans, orders


def reference(scans: list[dict[str, Any]], orders: list[dict[str, Any]]) -> Counter[tuple[str, int]]:
    """Every (scan, order) pair of one order with the order's time in [t - before, t + after]."""
    return Counter(
        (s["id"], o["amount"])
        for s in scans
        for o in orders
        if o["order"] == s["order"] and s["ts"] - BEFORE <= o["ts"] <= s["ts"] + AFTER
    )


@pytest.mark.parametrize("rekeyed_right", [False, True])
@pytest.mark.parametrize("watermarks", ["per_source", "per_partition"])
def test_a_join_of_rekeyed_sides_equals_a_brute_force_join(watermarks: str, rekeyed_right: bool) -> None:
    scans, orders = inputs(1500, seed=5)
    expected = reference(scans, orders)
    spec = join_topology(watermarks, rekeyed_right)
    order_topic = "orders.raw" if rekeyed_right else "orders"
    with TopologyTestDriver(spec, schemas=SCHEMAS, start_ms=T0) as d:
        # one side, then the other (the driver keeps arrival order across topics, so interleaving
        # them would cut the writers' batches short): each is re-keyed in batches of 40 spanning
        # ~80 s, so event time steps back by more than the bounds
        d.pipe_many("scans", scans)
        d.pipe_many(order_topic, orders)
        got = Counter((r.value["id"], r.value["amount"]) for r in d.records("matched"))
        late = d.stats("match")["dropped"].get("late_event", 0)
        written = d.records("orders")
    if watermarks == "per_source":
        # the writer tags what it writes to a topic a join reads
        assert written and all(H.WATERMARK in r.headers for r in written) == rekeyed_right
        assert late == 0
        assert got == expected
    else:  # the greatest time per partition: on-time records are late, partners expire early
        assert late > 0, late
        assert sum((expected - got).values()) > 10


# ---------------------------------------------------------------------------- the sliding aggregate

WINDOW = 20_000  # grace defaults to one window: pairs older than newest - 40 s are pruned


def aggregate_topology(watermarks: str) -> TopologySpec:
    return TopologySpec.model_validate(
        {
            "topology": "rekeyed_aggregate",
            "topics": {
                "scans": {"partitions": PARTS, "key": "id"},
                "scans.by_hub": {"partitions": PARTS, "key": "hub"},
                "scans.counted": {"partitions": PARTS, "key": "hub"},
            },
            "tables": {"recent": {}},
            "nodes": {
                "by_hub": {
                    "input": "scans",
                    "batch_size": 80,
                    "routes": [{"to": "scans.by_hub"}],
                    "errors": {"dlq": "x.dlq"},
                },
                "count": {
                    "input": "scans.by_hub",
                    "watermarks": watermarks,
                    "batch_size": 40,
                    "steps": [
                        {"step": "aggregate", "table": "recent", "key": "hub", "window": "20s", "as": "n"}
                    ],
                    "routes": [{"to": "scans.counted"}],
                    "errors": {"dlq": "count.dlq"},
                },
            },
        }
    )


@pytest.mark.parametrize("watermarks", ["per_source", "per_partition"])
def test_a_sliding_aggregate_of_a_rekeyed_input_equals_a_brute_force_count(watermarks: str) -> None:
    rng = random.Random(8)
    scans, t = [], T0
    for i in range(1500):
        t += rng.randrange(0, 2000)
        scans.append({"id": f"S{rng.randrange(10_000)}", "hub": f"H{rng.randrange(5)}", "ts": t, "i": i})
    with TopologyTestDriver(aggregate_topology(watermarks), schemas=SCHEMAS, start_ms=T0) as d:
        d.pipe_many("scans", scans)
        arrived = [r for r in d.records("scans.by_hub") if r.value is not None]
        got = {r.value["i"]: r.value["n"] for r in d.records("scans.counted")}
    # brute force over the order the reader reads them in (each hub in one partition, in offset
    # order): the records of the hub so far with time in (t - window, t]
    seen: dict[str, list[int]] = {}
    expected = {}
    for r in sorted(arrived, key=lambda r: (r.partition, r.offset)):
        v = r.value
        times = seen.setdefault(v["hub"], [])
        times.append(v["ts"])
        expected[v["i"]] = sum(1 for x in times if v["ts"] - WINDOW < x <= v["ts"])
    wrong = {i: (got.get(i), n) for i, n in expected.items() if got.get(i) != n}
    assert len(expected) == len(scans)
    if watermarks == "per_source":
        assert wrong == {}
    else:  # the key's newest time prunes what a lagging source's records still need
        assert len(wrong) > 20, len(wrong)
