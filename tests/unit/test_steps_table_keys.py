"""Record values cannot forge a step's own table keys (issue 19, item 3): dedupe, join and
aggregate keep a time index, chunks or watermarks beside the keys taken from records, marked by
ASCII separators; an identifier or key containing those separators stays a key of its own."""

from __future__ import annotations

import pytest
from step_harness import FakeContext, build, run_step, txn

from stream_orch.steps.base import Event

H = 3_600_000
T = 1_700_000_000_000
SEPARATORS = ["\x1b", "\x1c", "\x1d", "\x1e", "\x1f"]


async def test_dedupe_ids_made_of_separators_are_ids_and_prune_still_runs() -> None:
    dedupe = {"step": "dedupe", "field": "txn_id", "table": "seen_txns", "horizon": "24h"}
    step, ctx = build(dedupe), FakeContext()
    forged = [*SEPARATORS, f"\x1e{T // 60_000:015d}\x1evictim", "\x1e\x1e"]
    await run_step(step, [txn(txn_id=i, ts=T) for i in forged], ctx)
    await run_step(step, [txn(txn_id="victim", ts=T + 25 * H)], ctx)
    table = ctx.tables["seen_txns"]
    assert step.prune(table, 0) == len(forged), "every forged id expires like any other"
    out, ctx = await run_step(step, [txn(txn_id="victim", ts=T + 25 * H)], ctx)
    assert out == [] and ctx.drop_reasons == ["duplicate"], "a forged index entry deleted nothing"
    out, _ = await run_step(step, [txn(txn_id=i, ts=T + 25 * H) for i in forged], ctx)
    assert [r["txn_id"] for r in out] == forged, "expired: new again"


async def test_a_join_key_cannot_reach_another_keys_buffered_records() -> None:
    join = {
        "step": "join", "topic": "settlements", "table": "pending", "key": "payment_id",
        "kind": "interval", "before": "30m", "after": "30m", "fields": ["amount"],
    }  # fmt: skip
    step, ctx = build(join), FakeContext()

    def event(topic: str, pid: str, t: int, offset: int) -> Event:
        value = {"payment_id": pid, "ts": t, "amount": 1.0}
        return Event(value, b"k", b"{}", [], topic, 0, offset, t, 0, topic, 0, offset)

    await step.run([event("payments", "P1", T, 0)], ctx)
    # the left record's table key is L<US>P1<US><T><US><offset>: a right key that ends where
    # its time begins, at time 0, scanned exactly that record's range
    out = await step.run([event("settlements", f"P1\x1f{T:015d}", 0, 7)], ctx)
    assert out == [], "a settlement of another key joined payment P1"
    out = await step.run([event("settlements", "P1", T, 8)], ctx)
    assert [e.value["join_status"] for e in out] == ["matched"]


async def test_an_aggregate_key_cannot_overwrite_another_keys_chunk() -> None:
    velocity = {
        "step": "aggregate", "table": "account_velocity", "key": "account_id", "window": "60s",
        "function": "count", "as": "velocity_60s",
    }  # fmt: skip
    step, ctx = build(velocity), FakeContext()
    busy = [txn(account_id="A-1", ts=T + i) for i in range(300)]  # beyond one chunk of 256
    await run_step(step, busy, ctx)
    out, _ = await run_step(step, [txn(account_id="A-1\x1f0", ts=T + 400)], ctx)
    assert [r["velocity_60s"] for r in out] == [1], "a key of its own, not A-1's first chunk"
    out, _ = await run_step(step, [txn(account_id="A-1", ts=T + 401)], ctx)
    assert [r["velocity_60s"] for r in out] == [301]
    table = ctx.tables["account_velocity"]
    assert step.prune(table, 0, T + 10 * H) == 2, "both keys expire (a separator hid one from prune)"
    assert dict(table.items(0)) == {}


@pytest.mark.parametrize("kind", [{"kind": "tumbling", "size": "1m"}, {"kind": "session", "gap": "30s"}])
async def test_window_keys_made_of_separators_are_windows_of_their_own(kind: dict[str, str]) -> None:
    """The window step needs no escaping: its meta key is one character, and a key's text
    always comes last, after a fixed prefix and 15-digit fields (window_state's layout). This
    keeps it so."""
    step, ctx = build({"step": "window", "table": "w", "key": "m", "as": "n", **kind}), FakeContext()
    keys = ["", *SEPARATORS, f"\x1e{T:015d}", "\x1d\x1c", "plain"]
    records = [{"m": k, "ts": T + i} for i, k in enumerate(keys)] + [{"m": "z", "ts": T + 10 * H}]
    out = []
    for i, r in enumerate(records):  # a batch each: the state goes through the table every time
        out += await step.run([Event(r, partition=0, offset=i, topic="in")], ctx)
    assert sorted((e.value["m"], e.value["n"]) for e in out) == sorted((k, 1) for k in keys)
