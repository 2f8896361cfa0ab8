"""join (issue 13): interval and as_of stream-stream joins, checked against a reference that
pairs the records directly, in both arrival orders."""

from __future__ import annotations

import random

from step_harness import FakeContext, build

from stream_orch.steps.base import Event

S = 1000
M = 60 * S
T = 1_700_000_000_000
INTERVAL = {
    "step": "join", "topic": "settlements", "table": "pending", "key": "payment_id",
    "kind": "interval", "before": "30m", "after": "30m", "fields": ["amount"], "prefix": "settled_",
}  # fmt: skip


def pay(pid: str, t: int, offset: int, amount: float = 10.0) -> Event:
    value = {"payment_id": pid, "ts": t, "amount": amount}
    return Event(value, pid.encode(), b"{}", [], "payments", 0, offset, t, 0, "payments", 0, offset)


def settle(pid: str, t: int, offset: int, amount: float = 10.0) -> Event:
    value = {"payment_id": pid, "ts": t, "amount": amount}
    return Event(value, pid.encode(), b"{}", [], "settlements", 0, offset, t, 0, "settlements", 0, offset)


def reference(lefts: list[Event], rights: list[Event], before: int, after: int) -> set[tuple[int, int]]:
    return {
        (lft.offset, rgt.offset)
        for lft in lefts
        for rgt in rights
        if lft.value["payment_id"] == rgt.value["payment_id"]
        and lft.value["ts"] - before <= rgt.value["ts"] <= lft.value["ts"] + after
    }


async def _run(step, batches: list[list[Event]], ctx: FakeContext) -> list[Event]:
    out: list[Event] = []
    for batch in batches:
        out += await step.run(batch, ctx)
    return out


async def test_interval_join_matches_exactly_the_reference_pairs_in_any_arrival_order():
    rng = random.Random(7)
    lefts = [pay(f"P{i % 40}", T + rng.randrange(0, 120 * M), i) for i in range(120)]
    rights = [
        settle(f"P{i % 40}", T + rng.randrange(0, 120 * M), 1000 + i, amount=1000 + i) for i in range(120)
    ]
    expected = reference(lefts, rights, 30 * M, 30 * M)
    assert len(expected) > 50, "the data must have matches"
    for order in ("lefts first", "rights first", "shuffled"):
        records = lefts + rights if order == "lefts first" else rights + lefts
        if order == "shuffled":
            records = records[:]
            rng.shuffle(records)  # out of order: grace covers the whole run
        step, ctx = build(dict(INTERVAL, grace="3h")), FakeContext()
        out = await _run(step, [records[i : i + 17] for i in range(0, len(records), 17)], ctx)
        got = [(e.source_offset, int(e.value["settled_amount"])) for e in out]
        assert all(e.value["join_status"] == "matched" for e in out)
        assert len(got) == len(set(got)), f"{order}: a pair emitted twice"
        assert set(got) == expected, order


async def test_each_pair_is_emitted_once_with_the_right_fields():
    step, ctx = build(INTERVAL), FakeContext()
    out = await _run(
        step,
        [[pay("P1", T, 1, 25.0)], [settle("P1", T + 10 * M, 2, 24.5)], [settle("P1", T + 40 * M, 3, 25.0)]],
        ctx,
    )
    assert [(e.value["settled_amount"], e.source_offset, e.key) for e in out] == [(24.5, 1, b"P1")]
    assert out[0].value["amount"] == 25.0 and out[0].value["join_status"] == "matched"


async def test_left_join_emits_an_unmatched_record_once_the_other_side_passes_the_bound():
    step, ctx = build(dict(INTERVAL, how="left", grace="1m")), FakeContext()
    out = await _run(step, [[pay("P1", T, 1), pay("P2", T, 2)], [settle("P2", T + 5 * M, 3)]], ctx)
    assert [(e.value["payment_id"], e.value["join_status"]) for e in out] == [("P2", "matched")]
    out = await _run(step, [[settle("X", T + 30 * M, 4)]], ctx)  # not yet: the bound is 30 m + 1 m grace
    assert out == []
    out = await _run(step, [[settle("X", T + 31 * M + 1, 5)]], ctx)
    assert [(e.value["payment_id"], e.value["join_status"], e.source_offset) for e in out] == [
        ("P1", "unmatched", 1)
    ]
    out = await _run(step, [[settle("X", T + 200 * M, 6)]], ctx)  # P2 matched: never unmatched
    assert out == []
    table = ctx.tables["pending"]
    assert not [k for k in table._part(0) if k.startswith(("L\x1fP1", "L\x1fP2"))], "expired"
    assert [k for k in table._part(0) if k.startswith("R\x1fP2")], "waits for the payments' time"
    await _run(step, [[pay("Y", T + 40 * M, 7)]], ctx)
    assert not [k for k in table._part(0) if k.startswith("R\x1fP2")], "expired"


async def test_a_side_that_runs_ahead_does_not_expire_what_the_other_side_still_brings():
    """The two topics are fetched independently: payments may be hours ahead of settlements."""
    step, ctx = build(dict(INTERVAL, how="left")), FakeContext()
    payments = [pay(f"P{i}", T + i * 10 * M, i) for i in range(20)]  # 0 .. 190 min
    out = await _run(step, [payments], ctx)
    assert out == [], "nothing is unmatched before the settlements' time has moved"
    out = await _run(step, [[settle(f"P{i}", T + i * 10 * M + M, 100 + i) for i in range(20)]], ctx)
    assert sorted(e.source_offset for e in out if e.value["join_status"] == "matched") == list(range(20))
    assert [e for e in out if e.value["join_status"] == "unmatched"] == []


async def test_as_of_takes_the_latest_record_at_or_before_within_tolerance():
    spec = {"step": "join", "topic": "settlements", "table": "rates", "key": "payment_id", "kind": "as_of",
            "tolerance": "10m", "grace": "30m", "how": "left", "fields": ["amount"],
            "prefix": "r_"}  # fmt: skip
    step, ctx = build(spec), FakeContext()
    out = await _run(
        step,
        [[settle("P1", T, 1, 1.0), settle("P1", T + 5 * M, 2, 2.0), settle("P1", T + 20 * M, 3, 3.0)],
         [pay("P1", T + 6 * M, 4), pay("P1", T + 19 * M, 5), pay("P1", T + 21 * M, 6), pay("P1", T - M, 7)]],
        ctx,
    )  # fmt: skip
    assert [(e.source_offset, e.value["join_status"], e.value.get("r_amount")) for e in out] == [
        (4, "matched", 2.0),
        (5, "unmatched", None),  # the latest before 19 m is at 5 m: older than the tolerance
        (6, "matched", 3.0),
        (7, "unmatched", None),
    ]


async def test_bad_records_are_rejected():
    step, ctx = build(INTERVAL), FakeContext()
    bad = pay("P1", T, 1)
    bad.value["ts"] = "yesterday"
    await step.run([bad, pay("P2", T, 3)], ctx)
    missing = pay("P3", T, 4)
    del missing.value["payment_id"]
    await step.run([missing], ctx)
    assert ctx.reject_reasons == [
        "invalid_field: ts must be epoch ms (got 'yesterday')",
        "missing_field: payment_id is required to join",
    ]


async def test_a_left_record_arriving_after_the_other_side_passed_its_bound_is_unmatched_at_once():
    step, ctx = build(dict(INTERVAL, how="left")), FakeContext()
    await _run(step, [[settle("X", T + 300 * M, 1)]], ctx)  # settlements are hours ahead, then stop
    out = await _run(step, [[pay("P1", T, 2)], [pay("P2", T + 10 * M, 3)]], ctx)
    assert [(e.source_offset, e.value["join_status"]) for e in out] == [(2, "unmatched"), (3, "unmatched")]
