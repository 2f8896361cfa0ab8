"""join: what the table holds (issue 25's CPU work): a right record keeps only the fields a match
copies, entries written whole before still match, and expiry leaves no key behind, on a changelog
table over RocksDB as on the test double."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from step_harness import FakeContext, MemoryTable, build

from stream_orch.state.rocks import RocksStore
from stream_orch.state.tables import LocalTable
from stream_orch.steps.base import Event
from stream_orch.steps.join_records import with_value

S = 1000
M = 60 * S
T = 1_700_000_000_000
SPEC = {
    "step": "join", "topic": "settlements", "table": "pending", "key": "payment_id", "kind": "interval",
    "before": "5m", "after": "30m", "how": "left", "grace": "1m", "fields": ["amount", "currency"],
    "prefix": "settled_",
}  # fmt: skip


def pay(pid: str, t: int, offset: int) -> Event:
    value = {"payment_id": pid, "ts": t, "amount": 10.0, "currency": "EUR"}
    return Event(value, pid.encode(), b"{}", [], "payments", 0, offset, t, 0, "payments", 0, offset)


def settle(pid: str, t: int, offset: int, amount: float = 10.0) -> Event:
    value = {"payment_id": pid, "ts": t, "amount": amount, "currency": "EUR", "network": "visa", "id": offset}
    return Event(value, pid.encode(), b"{}", [], "settlements", 0, offset, t, 0, "settlements", 0, offset)


def rights(table: MemoryTable) -> dict[str, object]:
    return {k: v for k, v in table._part(0).items() if k.startswith("R\x1f")}


async def test_a_right_record_keeps_only_the_fields_a_match_copies():
    step, ctx = build(SPEC), FakeContext()
    await step.run([settle("P1", T, 1)], ctx)
    assert [v["v"] for v in rights(ctx.tables["pending"]).values()] == [{"amount": 10.0, "currency": "EUR"}]
    whole, ctx = build({k: v for k, v in SPEC.items() if k != "fields"}), FakeContext()
    await whole.run([settle("P1", T, 1)], ctx)  # no `fields`: a match copies all of them
    assert [v["v"]["network"] for v in rights(ctx.tables["pending"]).values()] == ["visa"]


async def test_a_right_entry_written_whole_before_matches_as_a_new_one():
    """A table restored from a changelog written before: its right records hold every field."""
    step, ctx = build(SPEC), FakeContext()
    await step.run([settle("P1", T + M, 1, amount=9.5)], ctx)
    table = ctx.tables["pending"]
    for key in rights(table):
        table.set(key, {"v": settle("P1", T + M, 1, amount=9.5).value}, 0)  # as main wrote it
    old = await step.run([pay("P1", T, 2)], ctx)
    new_step, new_ctx = build(SPEC), FakeContext()
    await new_step.run([settle("P1", T + M, 1, amount=9.5)], new_ctx)
    new = await new_step.run([pay("P1", T, 2)], new_ctx)
    assert [e.value for e in old] == [e.value for e in new]
    assert new[0].value["settled_amount"] == 9.5 and "settled_network" not in new[0].value


def test_an_emitted_record_is_the_input_event_with_another_value():
    event = Event({"a": 1}, b"k", b"{}", [("h", b"v")], "t", 3, 7, 11, 2, "s", 4, 5, 99)
    assert with_value(event, {"b": 2}) == dataclasses.replace(event, value={"b": 2})


async def _expire_all(table: object, sealed_tables: list[LocalTable]) -> list[tuple[str, str]]:
    step, ctx = build(SPEC), FakeContext({"pending": table})  # type: ignore[dict-item]
    batches = [
        [pay("P1", T, 1), pay("P2", T, 2)],
        [settle("P2", T + 2 * M, 3), settle("P3", T + 3 * M, 4)],
        [settle("X", T + 200 * M, 5), pay("Y", T + 200 * M, 6)],  # both sides far past every bound
    ]
    out = []
    for batch in batches:
        out += [(e.value["payment_id"], e.value["join_status"]) for e in await step.run(batch, ctx)]
        for t in sealed_tables:  # handed over and landed, as the runtime does per batch
            t.seal().land({})
    return out


async def test_expiry_leaves_no_entry_or_index_on_a_changelog_table(tmp_path: Path):
    memory = MemoryTable("pending")
    expected = await _expire_all(memory, [])
    assert expected == [("P2", "matched"), ("P1", "unmatched")]
    waiting = sorted(k for k in memory._part(0) if not k.startswith("\x1d"))
    assert all("X" in k or "Y" in k for k in waiting), waiting
    for opener in (None, lambda p: RocksStore(tmp_path / "rocks" / str(p))):
        table = LocalTable("pending", "pending.changelog", opener)
        table.open(0)
        assert await _expire_all(table, [table]) == expected
        left = sorted(k for k, _ in table.items(0) if not k.startswith("\x1d"))
        assert left == waiting
        assert len(table) == len(list(table.items(0)))  # the store's key count stays exact
        table.close()


class CountingTable(MemoryTable):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.reads: list[str] = []

    def get(self, key: str, partition: int, default: object = None) -> object:
        self.reads.append(key)
        return super().get(key, partition, default)


async def test_a_left_record_matched_on_arrival_expires_without_being_read():
    """Matched on arrival is said by its time index entry; one matched later by its record,
    rewritten with "m" (its entry is not rewritten: its expiry reads the record, once)."""
    table = CountingTable("pending")
    step, ctx = build(SPEC), FakeContext({"pending": table})  # type: ignore[dict-item]
    await step.run([pay("P1", T, 1), settle("P2", T, 2)], ctx)
    assert await step.run([settle("P1", T + M, 3), pay("P2", T, 4)], ctx) != []  # both matched
    assert [v for k, v in table._part(0).items() if k.startswith("\x1eL")] == [1, 2]  # P1, P2
    writes = table.writes
    out = await step.run([settle("X", T + 200 * M, 5)], ctx)
    assert out == [] and [k for k in table.reads if k.startswith("L\x1f")] == [
        f"L\x1fP1\x1f{T:015d}\x1f{1:015d}"
    ]
    assert not [k for k in table._part(0) if k.startswith(("L\x1fP", "\x1eL"))], "expired"
    assert table.writes > writes


async def test_a_left_record_matched_in_a_table_written_before_is_not_emitted_unmatched():
    """Before, a match rewrote the left record with "m": true and left its index entry at 1."""
    step, ctx = build(SPEC), FakeContext()
    await step.run([pay("P1", T, 1), pay("P2", T, 2)], ctx)
    table = ctx.tables["pending"]
    for key, value in list(table._part(0).items()):
        if key.startswith("L\x1fP1"):
            table.set(key, {**value, "m": True}, 0)  # P1 matched, as main wrote it
    out = await step.run([settle("X", T + 200 * M, 5)], ctx)
    assert [(e.value["payment_id"], e.value["join_status"]) for e in out] == [("P2", "unmatched")]


class ScanRecordingTable(MemoryTable):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.starts: list[str] = []

    def scan(self, partition: int, start: str, end: str):  # type: ignore[no-untyped-def]
        if start.startswith("\x1eL"):
            self.starts.append(start)
        return super().scan(partition, start, end)


async def test_expiry_reads_the_index_from_where_it_stopped_not_from_its_start():
    """RocksDB walks over every tombstone of the expired entries on a seek from the start."""
    table = ScanRecordingTable("pending")
    step, ctx = build(SPEC), FakeContext({"pending": table})  # type: ignore[dict-item]
    await step.run([pay("P1", T, 1), settle("X", T, 2)], ctx)
    assert table.starts == ["\x1eL"]  # nothing expired yet: from the start
    out = await step.run([settle("X", T + 40 * M, 3)], ctx)
    assert [(e.value["payment_id"], e.value["join_status"]) for e in out] == [("P1", "unmatched")]
    await step.run([settle("X", T + 50 * M, 4)], ctx)
    assert table.starts[-1] == f"\x1eL{T + 40 * M:015d}"  # from the settlements' time at the last


async def test_a_record_kept_below_where_expiry_stopped_still_expires():
    """The settlements ran far ahead: a payment on time on its own side expires at once."""
    step, ctx = build(SPEC), FakeContext()
    assert await step.run([settle("X", T + 200 * M, 1)], ctx) == []
    out = await step.run([pay("P1", T, 2), pay("P2", T + 100 * M, 3)], ctx)
    assert [(e.value["payment_id"], e.value["join_status"]) for e in out] == [
        ("P1", "unmatched"),
        ("P2", "unmatched"),
    ]
    assert not [k for k in ctx.tables["pending"]._part(0) if k.startswith(("L\x1f", "\x1eL"))]
