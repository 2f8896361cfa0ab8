"""window (issue 13, item 1): tumbling, hopping and session windows that emit their results.

The references here are written from the definitions (a record is in window [s, s + size) when
s <= t < s + size, unless the watermark at that record, the greatest time read so far, had
already reached s + size + grace), brute force over every candidate window, not from the step's
code; results must not depend on how the input is cut into batches.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError
from step_harness import SCHEMAS, FakeContext, MemoryTable, build

from stream_orch.steps import window_state as ws
from stream_orch.steps.base import Event
from stream_orch.topology.lint import lint
from stream_orch.topology.loader import parse_topology
from stream_orch.topology.models import StepSpec

M = 60_000
T0 = 1_700_000_040_000  # a minute boundary
TUMBLING = {"step": "window", "table": "w", "key": "m", "kind": "tumbling", "size": "1m", "as": "n"}


class Feed:
    """Events with increasing offsets per partition, as a topic hands them out."""

    def __init__(self) -> None:
        self.next: Counter[int] = Counter()

    def __call__(self, records: list[dict[str, Any]], partition: int = 0) -> list[Event]:
        out = []
        for r in records:
            out.append(Event(dict(r), partition=partition, offset=self.next[partition], topic="in"))
            self.next[partition] += 1
        return out


async def run_batches(
    step: Any, records: list[dict[str, Any]], cuts: list[int], ctx: FakeContext | None = None
):
    """Run ``records`` through ``step`` in batches ending at ``cuts``; (results, ctx)."""
    ctx = ctx or FakeContext()
    feed, results, start = Feed(), [], 0
    for end in [*cuts, len(records)]:
        if end > start:
            results += [e.value for e in await step.run(feed(records[start:end]), ctx)]
            start = end
    return results, ctx


def reference_fixed(records, size, advance, grace, function="count", field=None):
    """(emitted {(key, start): result}, late count, open windows) from the definition."""
    members: dict[tuple[str, int], list[dict]] = defaultdict(list)
    late, watermark = 0, -1
    for r in records:
        t = r["ts"]
        watermark = max(watermark, t)
        entered = False
        for s in range(0, t + 1, advance):
            if s <= t < s + size and s + size + grace > watermark:
                members[(r["m"], s)].append(r)
                entered = True
        if not entered:
            late += 1
    emitted, still_open = {}, {}
    for (k, s), rs in members.items():
        values = [x[field] for x in rs] if field else []
        value = {
            "count": len(rs),
            "sum": sum(values),
            "max": max(values) if values else None,
            "avg": sum(values) / len(values) if values else None,
        }[function]
        (emitted if s + size + grace <= watermark else still_open)[(k, s)] = value
    return emitted, late, still_open


def disordered(n: int, seed: int, keys: int = 4, spread_ms: int = 5 * M, late_every: int = 7) -> list[dict]:
    """Records moving forward in time, every ``late_every``-th one up to ``spread_ms`` behind."""
    rng = random.Random(seed)
    records, t = [], 0
    for i in range(n):
        t += rng.randrange(0, 4000)
        ts = t - rng.randrange(0, spread_ms) if i % late_every == 0 else t
        records.append({"m": f"M{rng.randrange(keys)}", "ts": max(0, ts), "amount": rng.randrange(1, 500)})
    return records


def as_windows(results: list[dict], value: str = "n") -> dict[tuple[str, int], Any]:
    out = {}
    for r in results:
        assert (r["m"], r["window_start"]) not in out, f"emitted twice: {r}"
        out[(r["m"], r["window_start"])] = r[value]
    return out


# ---------------------------------------------------------------------------- tumbling and hopping


@pytest.mark.parametrize("grace", [0, 30_000, 2 * M])
@pytest.mark.parametrize("seed", [1, 2])
async def test_tumbling_counts_equal_the_reference_including_late_events(grace: int, seed: int):
    records = disordered(3000, seed)
    expected, late, still_open = reference_fixed(records, M, M, grace)
    assert late > 0 and expected  # the data has late records beyond grace, and closed windows
    step = build({**TUMBLING, "grace": grace})
    cuts = sorted(random.Random(seed).sample(range(1, len(records)), 40))
    results, ctx = await run_batches(step, records, cuts)
    assert as_windows(results) == expected
    assert Counter(ctx.drop_reasons) == {"windowed": len(records) - late, "late_event": late}
    for r in results:
        assert r["window_end"] == r["window_start"] + M
    # what is still open is exactly what the reference has not closed, and nothing else is stored
    stored = {k for k in ctx.tables["w"].data[0] if k != ws.META}
    assert len(stored) == len(still_open)


async def test_results_do_not_depend_on_the_batches():
    records = disordered(1500, 5)
    one, _ = await run_batches(build(TUMBLING), records, [])
    each, _ = await run_batches(build(TUMBLING), records, list(range(1, len(records))))
    assert one and as_windows(one) == as_windows(each)


@pytest.mark.parametrize("function", ["count", "sum", "max", "avg"])
async def test_hopping_equals_the_reference(function: str):
    records = disordered(2000, 11)
    spec = {**TUMBLING, "kind": "hopping", "size": "5m", "advance": "1m", "grace": "1m", "function": function}
    if function != "count":
        spec["field"] = "amount"
    expected, late, _ = reference_fixed(
        records, 5 * M, M, M, function, "amount" if function != "count" else None
    )
    results, ctx = await run_batches(build(spec), records, list(range(100, 2000, 137)))
    got = as_windows(results)
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        assert got[k] == pytest.approx(v), k
    assert ctx.drop_reasons.count("late_event") == late
    assert {r["window_end"] - r["window_start"] for r in results} == {5 * M}


async def test_a_hopping_record_enters_its_open_windows_even_when_older_ones_closed():
    spec = {**TUMBLING, "kind": "hopping", "size": "3m", "advance": "1m"}
    records = [{"m": "a", "ts": T0 + 3 * M}, {"m": "a", "ts": T0 + 2 * M + 5}]  # [T0, T0+3m) closed
    results, ctx = await run_batches(build(spec), [*records, {"m": "a", "ts": T0 + 10 * M}], [])
    got = as_windows(results)
    assert got[("a", T0 + M)] == 2 and got[("a", T0 + 2 * M)] == 2 and got[("a", T0 + 3 * M)] == 1
    assert ("a", T0) not in got and "late_event" not in ctx.drop_reasons


async def test_functions_over_one_window():
    rows = [("a", 5), ("b", 2.5), ("c", 9), ("d", 1)]
    records = [{"m": "k", "ts": T0 + i * 1000, "v": v, "name": n} for i, (n, v) in enumerate(rows)]
    records.insert(2, {"m": "k", "ts": T0 + 500, "v": 100, "name": "early"})  # out of order, not latest
    closer = {"m": "k", "ts": T0 + 2 * M, "v": 0, "name": "x"}
    expect = {"sum": 117.5, "min": 1, "max": 100, "avg": 23.5, "latest": "d", "collect": [5, 2.5, 100, 9, 1]}
    for function, want in expect.items():
        field = "name" if function == "latest" else "v"
        step = build({**TUMBLING, "function": function, "field": field})
        results, _ = await run_batches(step, [*records, closer], [2])
        assert [r["n"] for r in results] == [want], function
    results, _ = await run_batches(
        build({**TUMBLING, "function": "sum", "field": "v"}), [records[0], closer], []
    )
    assert results[0]["n"] == 5 and type(results[0]["n"]) is int


async def test_collect_keeps_a_bounded_list():
    records = [{"m": "k", "ts": T0 + i, "v": i} for i in range(ws.COLLECT_MAX + 50)]
    step = build({**TUMBLING, "function": "collect", "field": "v"})
    results, _ = await run_batches(step, [*records, {"m": "k", "ts": T0 + 5 * M, "v": 0}], [300, 700])
    assert results[0]["n"] == list(range(ws.COLLECT_MAX))


async def test_on_update_emits_every_change_and_its_last_values_are_the_final_windows():
    records = disordered(800, 3)
    spec = {**TUMBLING, "grace": "30s"}
    expected, late, still_open = reference_fixed(records, M, M, 30_000)
    results, _ = await run_batches(build({**spec, "emit": "on_update"}), records, [100, 400])
    assert len(results) == len(records) - late  # one update per record that entered a window
    last = {(r["m"], r["window_start"]): r["n"] for r in results}
    assert last == {**expected, **still_open}


async def test_late_records_go_to_the_dlq_with_reason_late_event():
    step = build({**TUMBLING, "late": "dlq"})
    records = [{"m": "a", "ts": T0 + 2 * M}, {"m": "a", "ts": T0 + 10}]
    results, ctx = await run_batches(step, records, [1])
    assert results == [] and len(ctx.rejected) == 1
    assert ctx.reject_reasons[0].startswith("late_event: ts")
    assert ctx.rejected[0][0].value["ts"] == T0 + 10


async def test_bad_records_are_rejected_with_the_field():
    step = build({**TUMBLING, "function": "sum", "field": "v"})
    records = [{"ts": T0, "v": 1}, {"m": "a", "ts": "now", "v": 1}, {"m": "a", "ts": -5, "v": 1},
               {"m": "a", "ts": T0}, {"m": "a", "ts": T0, "v": "12"}]  # fmt: skip
    results, ctx = await run_batches(step, records, [])
    assert results == []
    assert ctx.reject_reasons == [
        "missing_field: m is required to window",
        "invalid_field: ts must be epoch ms (got 'now')",
        "invalid_field: ts must be epoch ms (got -5)",
        "missing_field: v is required to window",
        "invalid_field: v must be a number (got '12')",
    ]


async def test_watermarks_are_per_partition():
    step, ctx, feed = build(TUMBLING), FakeContext(), Feed()
    await step.run(feed([{"m": "a", "ts": T0}], partition=0), ctx)
    out = await step.run(feed([{"m": "b", "ts": T0 + 5 * M}], partition=1), ctx)
    assert out == []  # partition 1's time does not close partition 0's windows
    out = await step.run(feed([{"m": "a", "ts": T0 + 5 * M}], partition=0), ctx)
    assert [(e.value["m"], e.partition, e.offset) for e in out] == [("a", 0, 1)]


# ---------------------------------------------------------------------------- state and restarts


async def test_a_replay_of_applied_records_counts_nothing_twice():
    """at_least_once: a crash after the changelog, before the offset commit, replays records
    whose effect is already in the table: they are skipped by their offsets."""
    table = MemoryTable("w")
    records = [{"m": "a", "ts": T0 + i * 1000} for i in range(10)]
    ctx = FakeContext({"w": table})
    first = [Event(dict(r), partition=0, offset=i, topic="in") for i, r in enumerate(records)]
    await build(TUMBLING).run(first[:6], ctx)
    restarted = build(TUMBLING)  # a new worker: only the table (the changelog) survives
    replay = [Event(dict(r), partition=0, offset=i, topic="in") for i, r in enumerate(records)]
    closer = Event({"m": "a", "ts": T0 + 3 * M}, partition=0, offset=10, topic="in")
    out = await restarted.run([*replay[3:], closer], ctx)
    assert [e.value["n"] for e in out] == [10]
    assert ctx.drop_reasons.count("replayed") == 3


async def test_closing_reads_only_the_expired_range_and_deletes_what_it_emits():
    class Counting(MemoryTable):
        ranges: list[tuple[str, str]] = []

        def scan(self, partition, start, end):
            self.ranges.append((start, end))
            return super().scan(partition, start, end)

    table = Counting("w")
    ctx = FakeContext({"w": table})
    records = [{"m": f"M{i % 50}", "ts": T0 + i * 1000} for i in range(600)]  # 10 minutes, 50 keys
    results, _ = await run_batches(build(TUMBLING), records, list(range(50, 600, 50)), ctx)
    assert len(results) == 9 * 50
    assert all(start == ws.INDEX and end <= ws.up_to(T0 + 600_000) for start, end in table.ranges)
    assert len([k for k in table.data[0] if k != ws.META]) == 50  # the last minute, still open


# ---------------------------------------------------------------------------- sessions

SESSION = {"step": "window", "table": "w", "key": "m", "kind": "session", "gap": "30s", "as": "n"}


async def test_a_session_closes_on_the_gap():
    step, ctx, feed = build(SESSION), FakeContext(), Feed()
    records = [{"m": "a", "ts": T0}, {"m": "a", "ts": T0 + 20_000}, {"m": "a", "ts": T0 + 45_000}]
    out = await step.run(feed([*records, {"m": "b", "ts": T0 + 75_000}]), ctx)
    assert out == []  # a's session ends at T0 + 45 s: open until the watermark is past 30 s later
    results = [e.value for e in await step.run(feed([{"m": "b", "ts": T0 + 75_001}]), ctx)]
    assert results == [{"m": "a", "window_start": T0, "window_end": T0 + 45_000, "n": 3}]


async def test_a_record_exactly_gap_after_the_last_joins_its_session():
    """Kafka Streams' rule: records at most `gap` apart are one session (also when the record
    exactly `gap` later is the newest, with no grace)."""
    records = [{"m": "a", "ts": T0}, {"m": "a", "ts": T0 + 30_000}, {"m": "a", "ts": T0 + 60_000},
               {"m": "a", "ts": T0 + 90_001}, {"m": "b", "ts": T0 + 10 * M}]  # fmt: skip
    for cuts in ([], [1, 2, 3, 4]):
        results, _ = await run_batches(build(SESSION), records, cuts)
        assert results == [
            {"m": "a", "window_start": T0, "window_end": T0 + 60_000, "n": 3},
            {"m": "a", "window_start": T0 + 90_001, "window_end": T0 + 90_001, "n": 1},
        ]
    before = [{"m": "a", "ts": T0 + 30_000}, {"m": "a", "ts": T0}, {"m": "b", "ts": T0 + 10 * M}]
    results, _ = await run_batches(build({**SESSION, "grace": "1m"}), before, [1])
    assert results == [{"m": "a", "window_start": T0, "window_end": T0 + 30_000, "n": 2}]


async def test_a_late_record_bridging_two_sessions_merges_them():
    step = build({**SESSION, "grace": "1m", "function": "collect", "field": "i"})
    records = [{"m": "a", "ts": T0, "i": 1}, {"m": "a", "ts": T0 + 50_000, "i": 2},
               {"m": "a", "ts": T0 + 25_000, "i": 3}, {"m": "a", "ts": T0 + 5 * M, "i": 4}]  # fmt: skip
    results, _ = await run_batches(step, records, [1, 2])
    assert results == [{"m": "a", "window_start": T0, "window_end": T0 + 50_000, "n": [1, 2, 3]}]


async def test_a_session_record_later_than_gap_and_grace_is_late():
    step = build({**SESSION, "late": "dlq"})
    _, ctx = await run_batches(step, [{"m": "a", "ts": T0 + M}, {"m": "b", "ts": T0}], [])
    assert ctx.reject_reasons and ctx.reject_reasons[0].startswith("late_event:")


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_sessions_equal_an_offline_sessionisation_when_nothing_is_late(seed: int):
    rng = random.Random(seed)
    records, t = [], T0
    for _ in range(1500):
        t += rng.choice([1000, 5000, 20_000, 45_000, 90_000])
        records.append({"m": f"M{rng.randrange(5)}", "ts": t - rng.randrange(0, 40_000)})
    grace = 40_000  # the most a record is behind the newest: nothing is late
    results, ctx = await run_batches(build({**SESSION, "grace": grace}), records, list(range(7, 1500, 97)))
    assert "late_event" not in ctx.drop_reasons
    watermark = max(r["ts"] for r in records)
    expected = {}
    for key in {r["m"] for r in records}:
        times = sorted(r["ts"] for r in records if r["m"] == key)
        start = prev = times[0]
        n = 0
        for x in times:
            if x - prev > 30_000:  # at most gap apart: one session
                expected[(key, start)] = (prev, n)
                start, n = x, 0
            prev, n = x, n + 1
        expected[(key, start)] = (prev, n)
    closed = {k: v for k, v in expected.items() if v[0] + 30_000 + grace < watermark}
    assert {(r["m"], r["window_start"]): (r["window_end"], r["n"]) for r in results} == closed


# ---------------------------------------------------------------------------- spec, lint, docs


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({**TUMBLING, "size": 0}, "needs `size` > 0"),
        ({**TUMBLING, "grace": -1}, "cannot be negative"),
        ({**TUMBLING, "kind": "hopping"}, "needs `advance`"),
        ({**TUMBLING, "kind": "hopping", "advance": "2m"}, "0 < advance <= size"),
        ({**SESSION, "gap": 0}, "needs `gap` > 0"),
        ({**SESSION, "size": "1m"}, "not sessions"),
        ({**TUMBLING, "function": "sum"}, "needs `field`"),
    ],
)
def test_the_model_refuses_bad_windows(spec: dict, message: str):
    with pytest.raises(ValidationError, match=message):
        TypeAdapter(StepSpec).validate_python(spec)


TOPOLOGY = """
topology: w
topics:
  txns: {key: merchant_id, schema: transaction}
  counts: {key: merchant_id}
tables:
  minutes: {}
nodes:
  per_minute:
    input: txns
    steps:
      - {step: window, table: minutes, key: merchant_id, kind: tumbling, size: 1m, as: txn_count}
    routes:
      - {when: "txn_count > 10 and window_end > window_start", to: counts}
    errors: {dlq: txns.dlq}
"""


def _lint(text: str) -> list[str]:
    return [p.message for p in lint(parse_topology(text, "w.yaml", env={}), SCHEMAS.directory)]


def test_lint_checks_window_fields_and_knows_its_results():
    assert _lint(TOPOLOGY) == []
    bad = TOPOLOGY.replace("key: merchant_id, kind", "key: merchnt_id, kind")
    assert any("unknown field `merchnt_id`" in m for m in _lint(bad))
    assert any("not co-partitioned" in m for m in _lint(bad))
    after = TOPOLOGY.replace("txn_count > 10", "amount > 10")  # the input's fields are gone
    assert any("unknown field `amount`" in m for m in _lint(after))


def test_the_reference_docs_list_the_window_step():
    from stream_orch.topology.docs import render_reference

    text = render_reference()
    assert "### step: window" in text and "on_update" in text


def test_the_readme_example_through_the_topology_test_driver():
    """The worker's own record path (NodePipeline) in memory: results routed, late to the DLQ."""
    from stream_orch.testing import TopologyTestDriver

    text = TOPOLOGY.replace("txn_count > 10 and ", "").replace("as: txn_count}", "as: txn_count, late: dlq}")
    driver = TopologyTestDriver(parse_topology(text, "w.yaml", env={}), schemas=SCHEMAS)
    try:
        for i in range(5):
            driver.pipe("txns", {"merchant_id": "M-1", "ts": T0 + i * 10_000, "txn_id": f"t{i}"})
        driver.pipe("txns", {"merchant_id": "M-1", "ts": T0 + 2 * M, "txn_id": "closer"})
        driver.pipe("txns", {"merchant_id": "M-1", "ts": T0 + 1, "txn_id": "late"})
        out = [r.value for r in driver.records("counts")]
        assert out == [{"merchant_id": "M-1", "window_start": T0, "window_end": T0 + M, "txn_count": 5}]
        assert [r.headers.get("so.error.reason", "").split(":")[0] for r in driver.dead_letters()] == [
            "late_event"
        ]
    finally:
        driver.close()
