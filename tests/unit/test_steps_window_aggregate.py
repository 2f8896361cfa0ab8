"""window with several results (issue 20, part 3): `aggregate: {name: count | {function: field}}`.

The references are brute force from the definitions, not from the step's code: a record enters
every window [s, s + size) that holds it unless the watermark at that record (the greatest time
read so far) had reached s + size + grace; a session is a run of one key's records at most `gap`
apart. Each window's results are then computed from its member records in arrival order. Every
case runs in time order, in reverse and shuffled (a fixed seed), cut into batches.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import Any

import orjson
import pytest
from pydantic import TypeAdapter, ValidationError
from step_harness import SCHEMAS, FakeContext, build
from test_steps_window_emit import T0, M, run_batches

from stream_orch.steps import window_aggs
from stream_orch.steps.base import Event
from stream_orch.topology.models import StepSpec

AGGREGATE = {
    "n": "count",
    "first_hub": {"first": "hub"},
    "last_hub": {"last": "hub"},
    "total": {"sum": "amount"},
    "low": {"min": "amount"},
    "high": {"max": "amount"},
    "mean": {"avg": "amount"},
    "hubs": {"collect": "hub"},
    "distinct_hubs": {"count_distinct": "hub"},
}
BASE = {"step": "window", "table": "w", "key": "m", "aggregate": AGGREGATE}
FIXED = {**BASE, "kind": "tumbling", "size": "1m"}
SESSION = {**BASE, "kind": "session", "gap": "30s"}


def results_of(members: list[dict[str, Any]]) -> dict[str, Any]:
    """Every result of AGGREGATE over a window's records, in arrival order."""
    by_time = sorted(members, key=lambda r: r["ts"])  # times are distinct in these tests
    amounts = [r["amount"] for r in members]
    return {
        "n": len(members),
        "first_hub": by_time[0]["hub"],
        "last_hub": by_time[-1]["hub"],
        "total": sum(amounts),
        "low": min(amounts),
        "high": max(amounts),
        "mean": sum(amounts) / len(amounts),
        "hubs": [r["hub"] for r in members],
        "distinct_hubs": len({r["hub"] for r in members}),
    }


def records_for(n: int, seed: int, step_ms: int = 7_000) -> list[dict[str, Any]]:
    """Records with distinct times (ties would make first/last a matter of arrival)."""
    rng = random.Random(seed)
    times = rng.sample(range(T0, T0 + n * step_ms), n)
    return [
        {"m": f"M{rng.randrange(3)}", "ts": t, "hub": f"H{rng.randrange(4)}", "amount": rng.randrange(1, 50)}
        for t in sorted(times)
    ]


def orders(records: list[dict[str, Any]], seed: int) -> dict[str, list[dict[str, Any]]]:
    shuffled = list(records)
    random.Random(seed).shuffle(shuffled)
    return {"in order": list(records), "reversed": records[::-1], "shuffled": shuffled}


def reference_fixed(records, size: int, advance: int, grace: int):
    """({(key, start): results} of the windows closed by the last watermark, late count)."""
    members: dict[tuple[str, int], list[dict]] = defaultdict(list)
    late, watermark = 0, -1
    for r in records:
        t = r["ts"]
        watermark = max(watermark, t)
        entered = False
        for s in range(t - t % advance, t - size, -advance):
            if s >= 0 and s + size + grace > watermark:
                members[(r["m"], s)].append(r)
                entered = True
        late += not entered
    closed = {w: results_of(rs) for w, rs in members.items() if w[1] + size + grace <= watermark}
    return closed, late


def reference_sessions(records, gap: int):
    """{(key, start): (end, records)}: runs of one key's records at most `gap` apart."""
    out = {}
    for key in {r["m"] for r in records}:
        mine = sorted((r for r in records if r["m"] == key), key=lambda r: r["ts"])
        run = [mine[0]]
        for r in mine[1:]:
            if r["ts"] - run[-1]["ts"] > gap:
                out[(key, run[0]["ts"])] = (run[-1]["ts"], run)
                run = []
            run.append(r)
        out[(key, run[0]["ts"])] = (run[-1]["ts"], run)
    return out


def by_window(results: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    out = {}
    for r in results:
        w = (r["m"], r["window_start"])
        assert w not in out, f"emitted twice: {r}"
        out[w] = {k: v for k, v in r.items() if k not in ("m", "window_start", "window_end")}
    return out


def assert_same(got: dict, expected: dict, collect_in_order: bool = True) -> None:
    assert got.keys() == expected.keys()
    for w, want in expected.items():
        have = dict(got[w])
        assert have.pop("mean") == pytest.approx(want["mean"]), w
        if not collect_in_order:  # merged sessions list the earlier session's values first
            assert Counter(have.pop("hubs")) == Counter(want["hubs"]), w
            want = {k: v for k, v in want.items() if k != "hubs"}
        assert have == {k: v for k, v in want.items() if k != "mean"}, w


@pytest.mark.parametrize("order", ["in order", "reversed", "shuffled"])
@pytest.mark.parametrize(
    ("kind", "size", "advance", "grace"),
    [
        ("tumbling", M, M, 0),
        ("tumbling", M, M, 40 * M),
        ("hopping", 3 * M, M, 30_000),
        ("hopping", 3 * M, M, 40 * M),
    ],
)
async def test_fixed_windows_with_several_results_equal_the_reference(order, kind, size, advance, grace):
    records = orders(records_for(300, 4), 4)[order]
    records.append({"m": "closer", "ts": T0 + 300 * 7_000 + 30 * M, "hub": "H", "amount": 1})
    spec = {**FIXED, "kind": kind, "size": size, "grace": grace}
    if kind == "hopping":
        spec["advance"] = advance
    expected, late = reference_fixed(records, size, advance, grace)
    assert expected and (late > 0) == (order != "in order" and grace < 40 * M)
    results, ctx = await run_batches(build(spec), records, list(range(17, 300, 41)))
    assert_same(by_window(results), expected)
    assert ctx.drop_reasons.count("late_event") == late
    assert {r["window_end"] - r["window_start"] for r in results} == {size}


@pytest.mark.parametrize("order", ["in order", "reversed", "shuffled"])
async def test_sessions_with_several_results_equal_the_reference(order):
    records = records_for(250, 9, step_ms=18_000)  # gaps around 30 s: sessions form and merge
    grace = records[-1]["ts"] - records[0]["ts"]  # nothing is late in any order
    arrived = orders(records, 9)[order]
    closer = {"m": "other", "ts": records[-1]["ts"] + grace + 31_000, "hub": "H", "amount": 1}
    results, ctx = await run_batches(build({**SESSION, "grace": grace}), [*arrived, closer], [13, 77, 150])
    assert "late_event" not in ctx.drop_reasons
    sessions = reference_sessions(records, 30_000)
    ends = {(r["m"], r["window_start"]): r["window_end"] for r in results}
    assert ends == {w: end for w, (end, _) in sessions.items()}
    expected = {w: results_of([r for r in arrived if r in rs]) for w, (_, rs) in sessions.items()}
    # in time order no session merges, so collect is in arrival order; otherwise a merge decides
    assert_same(by_window(results), expected, collect_in_order=order == "in order")


async def test_first_and_last_follow_event_time_not_arrival():
    records = [
        {"m": "k", "ts": T0 + 30_000, "hub": "mid", "amount": 1},
        {"m": "k", "ts": T0 + 50_000, "hub": "late", "amount": 2},
        {"m": "k", "ts": T0 + 10_000, "hub": "early", "amount": 3},
        {"m": "k", "ts": T0 + 5 * M, "hub": "closer", "amount": 4},
    ]
    results, _ = await run_batches(build(FIXED), records, [1, 2])
    assert by_window(results)[("k", T0)] == {
        "n": 3, "first_hub": "early", "last_hub": "late", "total": 6, "low": 1, "high": 3, "mean": 2.0,
        "hubs": ["mid", "late", "early"], "distinct_hubs": 3,
    }  # fmt: skip


async def test_count_distinct_tells_a_string_from_a_number_and_is_bounded(monkeypatch):
    spec = {**FIXED, "aggregate": {"d": {"count_distinct": "hub"}}}
    records = [{"m": "k", "ts": T0 + i, "hub": h} for i, h in enumerate(["1", 1, "1", 1.5, "x"])]
    results, _ = await run_batches(build(spec), [*records, {"m": "k", "ts": T0 + 2 * M, "hub": 0}], [2])
    assert results[0]["d"] == 4
    monkeypatch.setattr(window_aggs, "DISTINCT_MAX", 3)
    results, _ = await run_batches(build(spec), [*records, {"m": "k", "ts": T0 + 2 * M, "hub": 0}], [2])
    assert results[0]["d"] == 3


async def test_a_record_missing_a_field_of_one_result_is_rejected_and_counts_nowhere():
    records = [
        {"m": "k", "ts": T0, "hub": "a", "amount": 5},
        {"m": "k", "ts": T0 + 1, "hub": "b"},
        {"m": "k", "ts": T0 + 2, "hub": "c", "amount": "x"},
        {"m": "k", "ts": T0 + 2 * M, "hub": "z", "amount": 0},
    ]
    results, ctx = await run_batches(build(FIXED), records, [])
    assert [r["n"] for r in results] == [1]
    assert ctx.reject_reasons == [
        "missing_field: amount is required to window",
        "invalid_field: amount must be a number (got 'x')",
    ]


async def test_results_survive_a_restart_from_the_table():
    """The state is the table alone: a new step over the same table goes on where one stopped
    (what a worker restoring the changelog does), with the same results as one that did not."""
    records = records_for(120, 3)
    records.append({"m": "closer", "ts": T0 + 30 * M, "hub": "H", "amount": 1})
    whole, _ = await run_batches(build(FIXED), records, [60])
    ctx = FakeContext()
    first = await build(FIXED).run(_events(records[:60], 0), ctx)
    rest = await build(FIXED).run(_events(records[60:], 60), ctx)
    assert whole and by_window([e.value for e in first + rest]) == by_window(whole)


def _events(records: list[dict[str, Any]], offset: int) -> list[Event]:
    return [Event(dict(r), partition=0, offset=offset + i, topic="in") for i, r in enumerate(records)]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({**FIXED, "as": "n"}, "use one form"),
        ({**FIXED, "function": "sum"}, "use one form"),
        ({**FIXED, "aggregate": {}}, "at least one"),
        ({**FIXED, "aggregate": {"m": "count"}}, "a field the window sets itself"),
        ({**FIXED, "aggregate": {"x": {"sum": "a", "max": "b"}}}, "one function and its field"),
        ({**FIXED, "aggregate": {"x": {"median": "a"}}}, "median"),
        ({k: v for k, v in FIXED.items() if k != "aggregate"}, "needs `as`"),
    ],
)
def test_the_model_refuses_bad_aggregates(spec, message):
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
      - step: window
        table: minutes
        key: merchant_id
        kind: tumbling
        size: 1m
        aggregate: {n: count, total: {sum: amount}, first_channel: {first: channel}}
    routes:
      - {when: "n > 10 and total > 0 and first_channel == 'web'", to: counts}
    errors: {dlq: txns.dlq}
"""


def test_lint_checks_each_results_field_and_knows_the_result_names():
    from stream_orch.topology.lint import lint
    from stream_orch.topology.loader import parse_topology

    def messages(text: str) -> list[str]:
        return [str(p) for p in lint(parse_topology(text, "w.yaml", env={}), SCHEMAS.directory)]

    assert messages(TOPOLOGY) == []
    bad = messages(TOPOLOGY.replace("{sum: amount}", "{sum: amount_eur}"))
    assert len(bad) == 1 and "result `total`: unknown field `amount_eur`" in bad[0]
    assert bad[0].startswith("w.yaml:17:")  # the aggregate line
    assert any("unknown field `amount`" in m for m in messages(TOPOLOGY.replace("total > 0", "amount > 0")))


def test_a_bad_aggregate_or_bound_is_one_line_with_file_and_line():
    from stream_orch.topology.loader import SpecError, parse_topology

    text = TOPOLOGY.replace(
        "first_channel: {first: channel}}", "first_channel: {first: channel, last: x}, y: cnt}"
    )
    text = text.replace(
        "    routes:",
        "      - {step: join, topic: counts, table: m, key: merchant_id, after: {field: ts}}\n    routes:",
    )
    with pytest.raises(SpecError) as info:
        parse_topology(text, "w.yaml", env={})
    lines = str(info.value).splitlines()
    assert [line.split(": ")[0] for line in lines if line.startswith("w.yaml")] == [
        "w.yaml:17",
        "w.yaml:17",
        "w.yaml:18",
    ]
    assert any(
        "aggregate.first_channel: an aggregation is one function and its field" in line for line in lines
    )
    assert any("aggregate.y: 'cnt': an aggregation is `count` or" in line for line in lines)
    assert any("after: a bound from a field: `max` is required" in line for line in lines)


def test_an_integer_sum_beyond_64_bits_goes_on_as_a_float_that_the_changelog_can_hold() -> None:
    """Record values near the int64 limit: their sum must stay writable to the changelog (JSON
    holds 64-bit integers only), or every batch of the partition would fail on it again."""
    from stream_orch.steps.window_aggs import INT64_MAX, combine, step

    a = step("sum", 0, INT64_MAX, 1)
    assert a == INT64_MAX and a.__class__ is int
    a = step("sum", a, INT64_MAX, 2)
    assert a == float(2 * INT64_MAX)
    orjson.dumps({"a": a})  # would raise "Integer exceeds 64-bit range" for the int
    assert combine("avg", -INT64_MAX, -INT64_MAX).__class__ is float
    assert combine("sum", 1, 2) == 3 and combine("sum", 1, 2).__class__ is int
