"""aggregate (rule f): velocity_60s = this account's transactions with time in (ts - 60 s, ts]."""

from __future__ import annotations

import orjson
from step_harness import FakeContext, build, run_step, txn

S = 1000
T = 1_700_000_000_000
VELOCITY = {
    "step": "aggregate",
    "table": "account_velocity",
    "key": "account_id",
    "window": "60s",
    "function": "count",
    "as": "velocity_60s",
}


async def velocities(times, ctx=None, step=None, account="A-1"):
    out, ctx = await run_step(step or build(VELOCITY), [txn(account_id=account, ts=t) for t in times], ctx)
    return [r["velocity_60s"] for r in out], ctx


async def test_counts_this_one_and_those_within_the_last_60s():
    got, _ = await velocities([T, T + 10 * S, T + 59 * S, T + 60 * S, T + 61 * S, T + 200 * S])
    # at T+60s the event at T is out: the window is (t - 60 s, t]; at T+61s: 10, 59, 60, 61
    assert got == [1, 2, 3, 3, 4, 1]


async def test_same_timestamp_counts_and_keys_are_separate():
    step, ctx = build(VELOCITY), FakeContext()
    got, _ = await velocities([T, T, T], ctx, step)
    assert got == [1, 2, 3]
    got, _ = await velocities([T], ctx, step, account="A-2")
    assert got == [1]


async def test_state_carries_across_batches_and_is_json_serialisable():
    step, ctx = build(VELOCITY), FakeContext()
    await velocities([T, T + S], ctx, step)
    got, _ = await velocities([T + 2 * S], ctx, step)
    assert got == [3]
    table = ctx.tables["account_velocity"]
    restored = orjson.loads(orjson.dumps(table.get("A-1", 0)))  # as the changelog stores it
    assert restored["e"] == [[T, None], [T + S, None], [T + 2 * S, None]]
    table.set("A-1", restored, 0)
    got, _ = await velocities([T + 3 * S], ctx, build(VELOCITY))  # a new worker, restored state
    assert got == [4]
    assert table.writes == 4  # one write per key per batch (3 batches) + the restore above


async def test_out_of_order_events_get_the_exact_count():
    # events at 0, 10, 70 s; then a late one at 40 s: (-20, 40] holds 0, 10 and itself
    got, _ = await velocities([T, T + 10 * S, T + 70 * S, T + 40 * S])
    assert got == [1, 2, 1, 3]
    step, ctx = build(VELOCITY), FakeContext()
    await velocities([T, T + 10 * S, T + 70 * S], ctx, step)
    got, _ = await velocities([T + 40 * S], ctx, step)  # late, in a later batch
    assert got == [3]
    got, _ = await velocities([T + 75 * S], ctx, step)  # later events do not count the late one twice
    assert got == [3]  # (15, 75]: 40, 70, 75


async def test_state_is_pruned_relative_to_the_newest_time():
    step, ctx = build(VELOCITY), FakeContext()
    await velocities([T + i * S for i in range(0, 300, 10)], ctx, step)
    pairs = ctx.tables["account_velocity"].get("A-1", 0)["e"]
    newest = T + 290 * S
    assert all(ts > newest - 120 * S for ts, _ in pairs)  # window + one window of grace
    assert step.prune(ctx.tables["account_velocity"], 0, newest + 121 * S) == 1
    assert ctx.tables["account_velocity"].get("A-1", 0) is None


async def test_sum_min_max_avg():
    records = [txn(amount=a, ts=T + i * S) for i, a in enumerate([10.0, 20.0, 30.0])]
    for function, expected in [
        ("sum", [10.0, 30.0, 60.0]),
        ("min", [10.0, 10.0, 10.0]),
        ("max", [10.0, 20.0, 30.0]),
        ("avg", [10.0, 15.0, 20.0]),
    ]:
        spec = dict(VELOCITY, function=function, field="amount", **{"as": "agg"})
        out, _ = await run_step(build(spec), records)
        assert [r["agg"] for r in out] == expected, function


async def test_bad_records_are_rejected():
    spec = dict(VELOCITY, function="sum", field="amount")
    out, ctx = await run_step(build(spec), [txn(account_id=...), txn(ts="x"), txn(amount="12")])
    assert out == []
    assert ctx.reject_reasons == [
        "missing_field: account_id is required to aggregate",
        "invalid_field: ts must be epoch ms (got 'x')",
        "invalid_field: amount must be a number (got '12')",
    ]


def _at(offsets_times, partition=0):
    from stream_orch.steps.base import Event

    return [
        Event(value=txn(account_id="A-1", ts=t), partition=partition, offset=o, source_offset=o, topic="in")
        for o, t in offsets_times
    ]


async def test_a_replayed_event_is_not_counted_twice():
    """A crash between the changelog write and the commit replays the batch: same source offsets."""
    step, ctx = build(VELOCITY), FakeContext()
    first = await step.run(_at([(10, T), (11, T + S), (12, T + S)]), ctx)
    assert [e.value["velocity_60s"] for e in first] == [1, 2, 3]
    replay = await step.run(_at([(10, T), (11, T + S), (12, T + S), (13, T + 2 * S)]), ctx)
    assert [e.value["velocity_60s"] for e in replay] == [1, 3, 3, 4]  # same-ts entries count together
    assert len(ctx.tables["account_velocity"].get("A-1", 0)["e"]) == 4
    late = await step.run(_at([(11, T + S)]), ctx)  # a retried event arrives with its source offset
    assert [e.value["velocity_60s"] for e in late] == [3]
    assert len(ctx.tables["account_velocity"].get("A-1", 0)["e"]) == 4


async def test_an_event_that_fails_later_in_the_batch_takes_its_contribution_back():
    """Issue 14, defect 5: an event that passed the aggregate and failed in a later step comes
    back (retry, or DLQ replay with a new offset) and must be counted once, not twice."""
    step, ctx = build(VELOCITY), FakeContext()
    batch = _at([(10, T), (11, T + S), (12, T + 2 * S)])
    passed = await step.run(batch, ctx)
    assert step.release([passed[1]]) == 1  # the event at offset 11 failed after this step
    window = ctx.tables["account_velocity"].get("A-1", 0)["e"]
    assert [e[2] for e in window] == [10, 12]
    replayed = await step.run(_at([(500, T + S)]), ctx)  # from the DLQ: a new offset
    assert [e.value["velocity_60s"] for e in replayed] == [2]  # T and itself
    assert step.release([]) == 0  # a batch with no failures leaves the window alone
    assert len(ctx.tables["account_velocity"].get("A-1", 0)["e"]) == 3


async def test_release_in_a_chunked_window_rewrites_the_chunks_it_touched():
    step, ctx = build(VELOCITY), FakeContext()
    first = await step.run(_at([(o, T + o) for o in range(600)]), ctx)  # three chunks
    step.release([])
    more = _at([(o, T + o) for o in range(600, 610)])
    passed = await step.run(more, ctx)
    assert step.release([first[5], passed[3]]) == 2  # one from an earlier batch: a crash replay
    reloaded = await step.run(_at([(1000, T + 1000)]), ctx)
    assert [e.value["velocity_60s"] for e in reloaded] == [610 - 2 + 1]
    table = ctx.tables["account_velocity"]
    from stream_orch.steps import windows

    offsets = [e[2] for e in windows.load(table, "A-1", 0).entries]
    assert 5 not in offsets and 603 not in offsets and offsets == sorted(offsets)


async def test_release_ignores_events_the_step_never_counted():
    step, ctx = build(VELOCITY), FakeContext()
    await step.run(_at([(10, T)]), ctx)
    from stream_orch.steps.base import Event

    never = [Event(value={"account_id": None}, offset=3, source_offset=3), _at([(99, T)])[0]]
    assert step.release(never) == 0
    assert len(ctx.tables["account_velocity"].get("A-1", 0)["e"]) == 1


async def test_when_counts_only_the_matching_records_and_annotates_every_one():
    """Issue 12, item 3: this account's online transactions in the last 60 s, on every record."""
    spec = dict(VELOCITY, when="channel == 'online'", **{"as": "online_60s"})
    channels = ["online", "card_present", "online", "card_present", "online"]
    records = [txn(channel=c, ts=T + i * 20 * S) for i, c in enumerate(channels)]  # 0, 20, 40, 60, 80 s
    out, _ = await run_step(build(spec), records)
    # (t - 60 s, t]: at 60 s the online record at 0 s is out; at 80 s: 40 and 80
    assert [r["online_60s"] for r in out] == [1, 1, 2, 1, 2]


async def test_when_result_types_for_an_empty_window():
    for function, empty, one in [("count", 0, 1), ("sum", 0, 7), ("min", None, 7), ("avg", None, 7.0)]:
        spec = dict(VELOCITY, function=function, field="amount", when="amount > 5", **{"as": "agg"})
        out, _ = await run_step(build(spec), [txn(amount=1, ts=T), txn(amount=7, ts=T + S)])
        assert [r["agg"] for r in out] == [empty, one], function
    sums, _ = await run_step(
        build(dict(VELOCITY, function="sum", field="amount")), [txn(amount=2), txn(amount=3)]
    )
    assert [type(r["velocity_60s"]) for r in sums] == [int, int], "a sum of ints stays an int"


async def test_when_that_cannot_be_evaluated_rejects_the_record():
    spec = dict(VELOCITY, when="amount > 5")
    out, ctx = await run_step(build(spec), [txn(amount="lots")])
    assert out == [] and ctx.reject_reasons[0].startswith("expression_error: aggregate when:")
