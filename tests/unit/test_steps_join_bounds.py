"""join (issue 20, part 3): an interval bound taken from each input record's field.

`after: {field: promised_by, max: 3d}`: a shipment at t matches the deliveries of its parcel with
time in [t - before, promised_by]; `before: {field: ...}` likewise gives the earliest time. Checked
against a reference that pairs the records directly, with the input first, the other side first
and shuffled, in batches; a left join reports exactly the shipments without a match.
"""

from __future__ import annotations

import random

import pytest
from step_harness import FakeContext, build
from test_steps_join import _run

from stream_orch.steps.base import Event

H = 3_600_000
D = 24 * H
T = 1_700_000_000_000
SPEC = {
    "step": "join", "topic": "deliveries", "table": "pending", "key": "parcel", "kind": "interval",
    "before": "1h", "after": {"field": "promised_by", "max": "3d"}, "how": "left", "fields": ["hub"],
    "prefix": "d_", "grace": "30d",
}  # fmt: skip


def shipment(parcel: str, t: int, offset: int, **fields) -> Event:
    value = {"parcel": parcel, "ts": t, **fields}
    return Event(value, parcel.encode(), b"{}", [], "shipments", 0, offset, t, 0, "shipments", 0, offset)


def delivery(parcel: str, t: int, offset: int) -> Event:
    value = {"parcel": parcel, "ts": t, "hub": f"H{offset}"}
    return Event(value, parcel.encode(), b"{}", [], "deliveries", 0, offset, t, 0, "deliveries", 0, offset)


def data(seed: int, field: str) -> tuple[list[Event], list[Event]]:
    rng = random.Random(seed)
    lefts, rights = [], []
    for i in range(120):
        t = T + rng.randrange(0, 10 * D)
        bound = t + rng.randrange(0, 3 * D) if field == "promised_by" else t - rng.randrange(0, 2 * D)
        lefts.append(shipment(f"P{i % 30}", t, i, **{field: bound}))
    for i in range(160):
        rights.append(delivery(f"P{rng.randrange(30)}", T + rng.randrange(-D, 13 * D), 1000 + i))
    return lefts, rights


def reference(lefts: list[Event], rights: list[Event], window) -> set[tuple[int, int]]:
    return {
        (lft.offset, rgt.offset)
        for lft in lefts
        for rgt in rights
        if lft.value["parcel"] == rgt.value["parcel"] and window(lft.value, rgt.value["ts"])
    }


CASES = {
    "after from a field": (
        SPEC,
        "promised_by",
        lambda left, t: left["ts"] - H <= t <= left["promised_by"],
    ),
    "before from a field": (
        {**SPEC, "before": {"field": "earliest", "max": "2d"}, "after": "1h"},
        "earliest",
        lambda left, t: left["earliest"] <= t <= left["ts"] + H,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("order", ["input first", "other first", "shuffled"])
async def test_field_bounds_match_exactly_the_reference_pairs(case: str, order: str):
    spec, field, window = CASES[case]
    lefts, rights = data(7, field)
    expected = reference(lefts, rights, window)
    assert len(expected) > 40
    records = lefts + rights if order == "input first" else rights + lefts
    if order == "shuffled":
        records = records[:]
        random.Random(3).shuffle(records)
    closer = [delivery("x", T + 60 * D, 5000), shipment("y", T + 60 * D, 5001, **{field: T + 60 * D})]
    step, ctx = build(spec), FakeContext()
    out = await _run(step, [records[i : i + 23] for i in range(0, len(records), 23)] + [closer], ctx)
    matched = [
        (e.source_offset, int(e.value["d_hub"][1:])) for e in out if e.value["join_status"] == "matched"
    ]
    assert len(matched) == len(set(matched)), "a pair emitted twice"
    assert set(matched) == expected
    unmatched = sorted(e.source_offset for e in out if e.value["join_status"] == "unmatched")
    assert unmatched == sorted({lft.offset for lft in lefts} - {p[0] for p in expected})
    assert "late_event" not in [w for _, w in ctx.dropped]


async def test_a_record_without_the_field_or_beyond_max_is_rejected():
    step, ctx = build(SPEC), FakeContext()
    await _run(
        step,
        [
            [
                shipment("a", T, 1),
                shipment("a", T, 2, promised_by=T + 4 * D),
                shipment("a", T, 3, promised_by="soon"),
            ]
        ],
        ctx,
    )
    assert [r for _, r, _ in ctx.rejected] == [
        "missing_field: promised_by is required to join (its after bound)",
        f"invalid_field: promised_by is more than {3 * D} ms after ts (max)",
        "invalid_field: promised_by must be epoch ms (got 'soon')",
    ]


async def test_the_other_sides_records_wait_for_the_largest_bound_only():
    """Retention stays bounded: a delivery is forgotten once the shipments' time passes its time +
    before (1h) + grace, whatever the promises; a shipment once the deliveries' time passes its own
    promise + grace, and it is then reported unmatched."""
    step, ctx = build({**SPEC, "grace": "0s"}), FakeContext()
    out = await _run(step, [[shipment("a", T, 1, promised_by=T + 2 * H)], [delivery("b", T + 2 * H, 2)]], ctx)
    assert out == []
    out = await _run(step, [[delivery("b", T + 2 * H + 1, 3)]], ctx)
    assert [(e.source_offset, e.value["join_status"], e.value["d_hub"]) for e in out] == [
        (1, "unmatched", None)
    ]
    await _run(step, [[shipment("c", T + 4 * H, 4, promised_by=T + 4 * H)]], ctx)
    assert not [k for k in ctx.tables["pending"]._part(0) if k.startswith("R\x1fb")]


def test_the_model_takes_a_bound_or_a_duration_and_refuses_half_of_one():
    from pydantic import TypeAdapter, ValidationError

    from stream_orch.topology.models import StepSpec
    from stream_orch.topology.models_time import JoinBound

    model = TypeAdapter(StepSpec).validate_python(SPEC)
    assert model.after == JoinBound(field="promised_by", max=3 * D) and model.before == H
    with pytest.raises(ValidationError, match="max"):
        TypeAdapter(StepSpec).validate_python({**SPEC, "after": {"field": "promised_by"}})
    with pytest.raises(ValidationError, match="as_of"):
        TypeAdapter(StepSpec).validate_python({**SPEC, "kind": "as_of", "before": 0})


def test_lint_checks_the_bound_field_with_its_line():
    from step_harness import SCHEMAS

    from stream_orch.topology.lint import lint
    from stream_orch.topology.loader import parse_topology

    text = """
topology: j
topics:
  payments: {key: payment_id, schema: payment}
  settlements: {key: payment_id, schema: settlement}
  out: {}
tables:
  p: {}
nodes:
  n:
    input: payments
    steps:
      - step: join
        topic: settlements
        table: p
        key: payment_id
        after: {field: settle_by, max: 1d}
        prefix: s_
    routes: [{to: out}]
    errors: {dlq: out}
"""
    problems = [str(p) for p in lint(parse_topology(text, "j.yaml", env={}), SCHEMAS.directory)]
    found = [p for p in problems if "settle_by" in p]
    assert len(found) == 1 and found[0].startswith(
        "j.yaml:17: node `n`, step join, after bound: unknown field"
    )
