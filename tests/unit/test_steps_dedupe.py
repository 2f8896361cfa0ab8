"""dedupe (rule c): a txn_id seen within the last 24 h of event time is dropped."""

from __future__ import annotations

from step_harness import FakeContext, MemoryTable, build, events, run_step, txn

from stream_orch.steps.dedupe import index_key

H = 3_600_000
T = 1_700_000_000_000
DEDUPE = {"step": "dedupe", "field": "txn_id", "table": "seen_txns", "horizon": "24h"}


async def test_duplicate_within_the_same_batch_is_dropped():
    out, ctx = await run_step(build(DEDUPE), [txn(txn_id="a"), txn(txn_id="b"), txn(txn_id="a", ts=T + H)])
    assert [r["txn_id"] for r in out] == ["a", "b"]
    assert ctx.drop_reasons == ["duplicate"]


async def test_duplicate_across_batches_within_24h_of_event_time():
    step, ctx = build(DEDUPE), FakeContext()
    await run_step(step, [txn(txn_id="a")], ctx)
    out, _ = await run_step(step, [txn(txn_id="a", ts=T + 24 * H - 1)], ctx)
    assert out == [] and ctx.drop_reasons == ["duplicate"]
    # an earlier event time (out of order) within the horizon is a duplicate too
    out, _ = await run_step(step, [txn(txn_id="a", ts=T - 23 * H)], ctx)
    assert out == []


async def test_same_id_after_24h_is_not_a_duplicate():
    step, ctx = build(DEDUPE), FakeContext()
    await run_step(step, [txn(txn_id="a")], ctx)
    out, _ = await run_step(step, [txn(txn_id="a", ts=T + 24 * H)], ctx)
    assert len(out) == 1
    assert ctx.tables["seen_txns"].get("a", 0) == T + 24 * H
    # and it is now remembered from its new time
    out, _ = await run_step(step, [txn(txn_id="a", ts=T + 30 * H)], ctx)
    assert out == []


async def test_state_is_per_partition_and_survives_a_new_step_object():
    table = MemoryTable("seen_txns")
    ctx = FakeContext({"seen_txns": table})
    await run_step(build(DEDUPE), [txn(txn_id="a")], ctx, partition=1)
    out, _ = await run_step(build(DEDUPE), [txn(txn_id="a")], ctx, partition=1)  # e.g. after a restart
    assert out == []
    out, _ = await run_step(build(DEDUPE), [txn(txn_id="a")], ctx, partition=2)
    assert len(out) == 1


async def test_missing_id_or_bad_time_is_rejected():
    out, ctx = await run_step(build(DEDUPE), [txn(txn_id=...), txn(ts="soon")])
    assert out == []
    assert ctx.reject_reasons == [
        "missing_field: txn_id is required to dedupe",
        "invalid_field: ts must be epoch ms (got 'soon')",
    ]


async def test_prune_deletes_ids_older_than_the_horizon():
    step, ctx = build(DEDUPE), FakeContext()
    await run_step(step, [txn(txn_id="old", ts=T), txn(txn_id="new", ts=T + 25 * H)], ctx)
    table = ctx.tables["seen_txns"]
    assert step.watermarks == {0: T + 25 * H}
    assert step.prune(table, 0) == 1
    assert dict(table.items(0)) == {"new": T + 25 * H, index_key(T + 25 * H, "new"): 1}
    assert step.prune(table, 5) == 0


class _ScanCounting(MemoryTable):
    def __init__(self) -> None:
        super().__init__("seen_txns")
        self.scanned = 0

    def scan(self, partition, start, end):  # type: ignore[no-untyped-def]
        found = list(super().scan(partition, start, end))
        self.scanned += len(found)
        return iter(found)


async def test_prune_reads_only_the_expired_part_of_the_time_index():
    step, ctx = build(DEDUPE), FakeContext()
    table = ctx.tables["seen_txns"] = _ScanCounting()
    old = [txn(txn_id=f"old-{i}", ts=T + i) for i in range(100)]
    fresh = [txn(txn_id=f"new-{i}", ts=T + 25 * H + i) for i in range(1000)]
    await run_step(step, old + fresh, ctx)
    assert step.prune(table, 0) == 100
    assert table.scanned == 100, "only the index entries of expired buckets are read"
    assert table.get("old-0", 0) is None and table.get("new-0", 0) == T + 25 * H
    seen_again, _ = await run_step(step, [txn(txn_id="new-1", ts=T + 25 * H + 1)], ctx)
    assert seen_again == [], "a live id is still a duplicate"


async def test_an_event_that_fails_later_in_the_batch_gives_its_id_back():
    """Its retry (or its replay from the DLQ) must not be dropped as a duplicate of itself."""
    step, ctx = build(DEDUPE), FakeContext()
    passed = await step.run(events(txn(txn_id="a"), txn(txn_id="b")), ctx)
    failed_later = [e for e in passed if e.value["txn_id"] == "a"]  # e.g. a python step raised
    assert step.release(failed_later) == 1
    assert ctx.tables["seen_txns"].get("a", 0) is None and ctx.tables["seen_txns"].get("b", 0) == T
    retried, _ = await run_step(step, [txn(txn_id="a")], ctx)
    assert len(retried) == 1, "the retry of a failed event is not a duplicate"
    again, _ = await run_step(step, [txn(txn_id="b")], ctx)
    assert again == [], "an event that went through keeps its id"


async def test_release_restores_an_older_mark_and_leaves_a_newer_record_s_mark():
    step, ctx = build(DEDUPE), FakeContext()
    await run_step(step, [txn(txn_id="a", ts=T)], ctx)
    step.release([])
    # outside the horizon: a new "a" passes and moves the mark; then it fails
    passed = await step.run(events(txn(txn_id="a", ts=T + 25 * H)), ctx)
    step.release(passed)
    assert ctx.tables["seen_txns"].get("a", 0) == T
    # two passing "a" in one batch (far apart): the first fails, the second's mark stays
    batch = events(txn(txn_id="a", ts=T + 50 * H), txn(txn_id="a", ts=T + 80 * H))
    assert len(await step.run(batch, ctx)) == 2
    assert step.release([batch[0]]) == 0
    assert ctx.tables["seen_txns"].get("a", 0) == T + 80 * H


async def test_marks_follow_the_event_s_coordinates_not_its_python_object():
    """Issue 14, defect 6: marks were keyed by ``id(event)``. A step between dedupe and the
    failure may hand on a new Event object for the same record (and Python reuses the ids of
    freed objects); the failed event must still give its own id back, and only its own."""
    import dataclasses

    step, ctx = build(DEDUPE), FakeContext()
    passed = await step.run(events(txn(txn_id="a"), txn(txn_id="b")), ctx)
    copies = [dataclasses.replace(e, value=dict(e.value)) for e in passed]  # e.g. a python step's output
    del passed
    assert step.release([copies[0]]) == 1
    table = ctx.tables["seen_txns"]
    assert table.get("a", 0) is None and table.get("b", 0) == T
