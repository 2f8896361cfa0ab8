"""Watermarks across re-keying (issue 20, part 1): a window's watermark is the minimum over the
writer's source partitions, an idle source is left out after ``idle_timeout``, and the per-source
state survives a restart.

The step tests drive the window with ``so.wm`` headers as the writer sets them and a clock of
their own; the driver test runs a re-keying topology (3 partitions in, 3 out, the writer's
batches cut across the source partitions) in memory and checks every window against a count
over the input, with propagation on and off (off: the bug the issue measured, late records).
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from step_harness import SCHEMAS, FakeContext, MemoryTable

from stream_orch.reliability import headers as H
from stream_orch.runtime.output import murmur2
from stream_orch.steps.base import Event
from stream_orch.steps.window_emit import WindowStepImpl
from stream_orch.testing import TopologyTestDriver
from stream_orch.topology.models import TopologySpec

M = 60_000
T0 = 1_700_000_040_000  # a minute boundary
SOURCES = frozenset({"a/0", "a/1"})


class Clock:
    def __init__(self) -> None:
        self.ms = 1_000_000

    def __call__(self) -> int:
        return self.ms


def window(clock: Clock, sources: frozenset[str] | None = SOURCES, idle_ms: int = 10_000) -> WindowStepImpl:
    return WindowStepImpl(
        table="w", key="k", kind="tumbling", as_="n", size_ms=M, late="dlq",
        sources=sources, idle_timeout_ms=idle_ms, clock=clock,
    )  # fmt: skip


class Feed:
    """Records of one reader partition, each from a writer source with its so.wm."""

    def __init__(self) -> None:
        self.offset = 0

    def __call__(self, *records: tuple[str, int, int]) -> list[Event]:
        """(source, event time, source watermark) per record."""
        out = []
        for src, t, mark in records:
            headers = [(H.WATERMARK, f"{src}/{mark}".encode())]
            out.append(Event({"k": "x", "ts": t}, b"x", b"{}", headers, "in", 0, self.offset))
            self.offset += 1
        return out

    def mark(self, src: str, mark: int) -> Event:
        """A watermark record (no value)."""
        headers = [(H.WATERMARK, f"{src}/{mark}".encode()), (H.WATERMARK_ONLY, b"")]
        event = Event({}, None, None, headers, "in", 0, self.offset)
        self.offset += 1
        return event


async def run(step: WindowStepImpl, ctx: FakeContext, events: list[Event]) -> list[dict[str, Any]]:
    return [e.value for e in await step.run(events, ctx)]


async def test_the_watermark_is_the_minimum_over_the_sources() -> None:
    clock, feed, ctx = Clock(), Feed(), FakeContext()
    step = window(clock)
    # a/0 is 70 s in; a/1 only 10 s: the first minute is still open for a/1's records
    out = await run(step, ctx, feed(("a/0", T0 + 70_000, T0 + 70_000), ("a/1", T0 + 10_000, T0 + 10_000)))
    assert out == []
    out = await run(step, ctx, feed(("a/1", T0 + 5_000, T0 + 10_000)))  # behind a/0 by 65 s: on time
    assert out == [] and ctx.reject_reasons == []
    out = await run(step, ctx, feed(("a/1", T0 + 61_000, T0 + 61_000)))
    assert out == [{"k": "x", "window_start": T0, "window_end": T0 + M, "n": 2}]  # a/0 is in the next
    out = await run(step, ctx, feed(("a/1", T0 + 1_000, T0 + 61_000)))  # now it is late
    assert out == [] and ctx.reject_reasons[0].startswith("late_event")


async def test_per_partition_calls_the_same_record_late() -> None:
    clock, feed, ctx = Clock(), Feed(), FakeContext()
    step = window(clock, sources=None)
    await run(step, ctx, feed(("a/0", T0 + 70_000, T0 + 70_000), ("a/1", T0 + 10_000, T0 + 10_000)))
    assert [r.split(":")[0] for r in ctx.reject_reasons] == ["late_event"]


async def test_a_watermark_record_moves_its_source_and_is_no_record() -> None:
    clock, feed, ctx = Clock(), Feed(), FakeContext()
    step = window(clock)
    await run(step, ctx, feed(("a/0", T0 + 1_000, T0 + 70_000)))
    ctx = FakeContext(ctx.tables)
    ctx.passed_over = [feed.mark("a/1", T0 + 65_000)]  # a/1's records all went elsewhere
    out = await step.run([], ctx)
    assert [e.value["n"] for e in out] == [1] and ctx.dropped == [] and ctx.rejected == []


async def test_a_silent_source_is_left_out_after_idle_timeout() -> None:
    clock, feed, ctx = Clock(), Feed(), FakeContext()
    step = window(clock, idle_ms=10_000)
    assert await run(step, ctx, feed(("a/0", T0 + 1_000, T0 + 70_000))) == []  # a/1 never heard
    for i in range(10):  # a/0 heard every second (silence is counted while something is heard)
        clock.ms += 1_000
        assert await run(step, ctx, feed(("a/0", T0 + 71_000, T0 + 71_000 + i))) == []  # not idle yet
    clock.ms += 1
    out = await run(step, ctx, feed(("a/0", T0 + 72_000, T0 + 72_000)))
    assert [(r["window_start"], r["n"]) for r in out] == [(T0, 1)]
    # a/1 comes back behind: the watermark does not move back, its old records are late
    await run(step, ctx, feed(("a/1", T0 + 2_000, T0 + 2_000)))
    assert [r.split(":")[0] for r in ctx.reject_reasons] == ["late_event"]


async def test_the_sources_survive_a_restart_with_the_window_state() -> None:
    clock, feed = Clock(), Feed()
    tables = {"w": MemoryTable("w")}
    first = window(clock)
    await run(
        first, FakeContext(tables), feed(("a/0", T0 + 1_000, T0 + 90_000), ("a/1", T0 + 2_000, T0 + 30_000))
    )
    meta = tables["w"].get("\x1c", 0)
    assert meta["w"] == T0 + 30_000 and {s: m for s, (m, _) in meta["s"].items()} == {
        "a/0": T0 + 90_000,
        "a/1": T0 + 30_000,
    }
    # a new worker, long after: the stored times are old, but silence counts from its take-over,
    # so a/1 (in its backlog) still holds the window, and a/0's stored time still counts
    clock.ms += 3_600_000
    second = window(clock)
    ctx = FakeContext(tables)
    assert await run(second, ctx, feed(("a/1", T0 + 3_000, T0 + 40_000))) == []
    assert ctx.rejected == []
    out = await run(second, ctx, feed(("a/1", T0 + 61_000, T0 + 61_000)))
    assert [(r["window_start"], r["n"]) for r in out] == [(T0, 3)]


# ---------------------------------------------------------------------------- two nodes, in memory

PARTS = 3


def rekeying(watermarks: str) -> TopologySpec:
    doc: dict[str, Any] = {
        "topology": "rekey",
        "topics": {
            "scans": {"partitions": PARTS, "key": "id"},
            "scans.by_hub": {"partitions": PARTS, "key": "hub"},
            "scans.copy": {"partitions": PARTS, "key": "id"},
            "hub.counts": {"partitions": PARTS, "key": "hub"},
            "scans.dlq": {"partitions": 1},
            "hub.dlq": {"partitions": 1},
        },
        "tables": {"per_hub": {}},
        "nodes": {
            "by_hub": {
                "input": "scans",
                "batch_size": 40,
                "routes": [{"to": ["scans.by_hub", "scans.copy"]}],
                "errors": {"dlq": "scans.dlq"},
            },
            "count": {
                "input": "scans.by_hub",
                "watermarks": watermarks,
                "batch_size": 40,
                "steps": [
                    {
                        "step": "window",
                        "table": "per_hub",
                        "key": "hub",
                        "kind": "tumbling",
                        "size": "1m",
                        "as": "n",
                        "late": "dlq",
                    }
                ],
                "routes": [{"to": "hub.counts"}],
                "errors": {"dlq": "hub.dlq"},
            },
        },
    }
    return TopologySpec.model_validate(doc)


def scans(n: int, seed: int) -> list[dict[str, Any]]:
    """In time order overall (so in order within each source partition), ~1 s apart."""
    rng = random.Random(seed)
    out, t = [], T0
    for i in range(n):
        t += rng.randrange(0, 2000)
        out.append({"id": f"P-{rng.randrange(10_000)}", "hub": f"H{rng.randrange(7)}", "ts": t, "i": i})
    return out


def flush() -> list[dict[str, Any]]:
    """One record per source partition far ahead: closes every window once all three are read."""
    ids: dict[int, str] = {}
    i = 0
    while len(ids) < PARTS:
        ids.setdefault((murmur2(f"F-{i}".encode()) & 0x7FFFFFFF) % PARTS, f"F-{i}")
        i += 1
    return [{"id": k, "hub": "H0", "ts": T0 + 10**9, "i": -1} for k in ids.values()]


@pytest.mark.parametrize("watermarks", ["per_source", "per_partition"])
def test_rekeyed_counts_equal_the_reference_only_with_per_source(watermarks: str) -> None:
    records = scans(1500, seed=20)
    expected = Counter((r["hub"], r["ts"] - r["ts"] % M) for r in records)
    with TopologyTestDriver(rekeying(watermarks), schemas=SCHEMAS, start_ms=T0) as d:
        d.pipe_many("scans", records + flush())
        got = {(r.value["hub"], r.value["window_start"]): r.value["n"] for r in d.records("hub.counts")}
        dead = d.dead_letters()
        late = [r for r in dead if (r.reason or "").startswith("late_event")]
        copies = d.records("scans.copy")
        by_hub = d.records("scans.by_hub")
        stats = d.stats("count")
    if watermarks == "per_source":
        assert dead == []  # watermark records never reach a step nor the DLQ (no null_value)
        assert got == dict(expected)
        # the tag only where a window reads: not on the copy, and no watermark records there
        assert len(copies) == len(records) + PARTS and all(H.WATERMARK not in r.headers for r in copies)
        assert all(H.WATERMARK in r.headers for r in by_hub)
        assert stats["records_in"] == len(records) + PARTS  # watermark records are no input
    else:
        # the writer's batches, one per source partition, step back in time in every target
        assert len(late) > 50, len(late)
        # (and the windows of partitions no flush record reached stay open)
        assert sum(got.values()) + len(late) <= len(records)
        assert all(H.WATERMARK not in r.headers for r in by_hub)


async def test_a_pause_of_the_whole_partition_is_no_silence_of_one_source() -> None:
    """Every source quiet at once (a broker outage, a stopped writer node, this worker stalled):
    when records come back, the first source heard must not leave the others out as idle. The
    cluster test saw it: after 60 s with two brokers down, a velocity table pruned accounts whose
    source had not been heard again yet (1,030 of 20,000 velocities too low)."""
    clock, feed, ctx = Clock(), Feed(), FakeContext()
    step = window(clock, idle_ms=10_000)
    await run(step, ctx, feed(("a/0", T0 + 1_000, T0 + 1_000), ("a/1", T0 + 2_000, T0 + 2_000)))
    clock.ms += 30_000  # nothing at all heard for three idle timeouts
    assert await run(step, ctx, feed(("a/0", T0 + 70_000, T0 + 70_000))) == []  # a/1 still counts
    clock.ms += 100
    out = await run(step, ctx, feed(("a/1", T0 + 3_000, T0 + 3_000)))
    assert out == [] and ctx.rejected == []  # on time: the first minute is still open
    out = await run(step, ctx, feed(("a/1", T0 + 61_000, T0 + 61_000)))
    assert [(r["window_start"], r["n"]) for r in out] == [(T0, 3)]


async def test_a_source_silent_after_a_pause_is_still_left_out() -> None:
    clock, feed, ctx = Clock(), Feed(), FakeContext()
    step = window(clock, idle_ms=10_000)
    await run(step, ctx, feed(("a/0", T0 + 1_000, T0 + 1_000), ("a/1", T0 + 2_000, T0 + 2_000)))
    clock.ms += 30_000  # the pause: only its first quarter of an idle timeout counts as silence
    for i in range(8):  # a/0 alone for 8 s more: a/1 is silent 2.5 + 8 > 10 s by then
        assert await run(step, ctx, feed(("a/0", T0 + 70_000 + i, T0 + 70_000 + i))) == []
        clock.ms += 1_000
    out = await run(step, ctx, feed(("a/0", T0 + 71_000, T0 + 71_000)))
    assert [(r["window_start"], r["n"]) for r in out] == [(T0, 2)]


def test_a_sliding_aggregate_takes_its_idle_timeout_from_the_topology() -> None:
    from step_harness import REPO

    from stream_orch.steps.aggregate import AggregateStepImpl
    from stream_orch.steps.registry import build_steps
    from stream_orch.topology.loader import load_topology

    def velocity(spec: TopologySpec) -> AggregateStepImpl:
        steps = build_steps(spec, "score_transactions", SCHEMAS)
        return next(s for s in steps if isinstance(s, AggregateStepImpl))

    spec = load_topology(REPO / "topologies" / "fraud_detection.yaml", env={"STREAM_ORCH_MASK_KEY": "k"}).spec
    assert velocity(spec).idle_ms == 60_000
    node = spec.nodes["score_transactions"]
    step = next(s for s in node.steps if s.step == "aggregate")
    changed = step.model_copy(update={"idle_timeout": 5_000})
    node.steps[node.steps.index(step)] = changed
    assert velocity(spec).idle_ms == 5_000
