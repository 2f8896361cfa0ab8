"""A key's window in records of bounded size: the hot key (40,000 entries in one window), chunks
rewritten only where they changed, and the first format still read."""

from __future__ import annotations

import random

import orjson
from step_harness import FakeContext, MemoryTable, build, run_step, txn
from test_steps_aggregate import VELOCITY

from stream_orch.steps import windows

S = 1000
T = 1_700_000_000_000


class RecordingTable(MemoryTable):
    """Remembers the size of every value written (what the changelog would carry)."""

    def __init__(self) -> None:
        super().__init__("account_velocity")
        self.sizes: list[int] = []

    def set(self, key, value, partition):  # type: ignore[no-untyped-def]
        self.sizes.append(len(orjson.dumps(value)))
        super().set(key, value, partition)


async def test_a_hot_key_keeps_every_record_small_and_counts_exactly() -> None:
    table = RecordingTable()
    ctx = FakeContext()
    ctx.tables["account_velocity"] = table
    step = build(VELOCITY)
    n, batch = 40_000, 2_000
    last = []
    for start in range(0, n, batch):
        events = [txn(account_id="A-HOT", ts=T + i) for i in range(start, start + batch)]  # 1 ms apart
        out, _ = await run_step(step, events, ctx)
        last = [r["velocity_60s"] for r in out]
        writes = len(table.sizes)
        assert writes < 30, f"a batch of {batch} wrote {writes} records"
        table.sizes.clear()
    assert last[-1] == n
    head = table.get("A-HOT", 0)
    assert len(head["ids"]) == -(-n // windows.CHUNK)
    every = [table.get(windows.chunk_key("A-HOT", i), 0) for i in head["ids"]]
    assert max(len(orjson.dumps(c)) for c in every) < 16 * 1024


def test_load_and_save_keep_the_entries_through_pruning_and_late_inserts() -> None:
    table = MemoryTable()
    rng = random.Random(7)
    reference: list[list[int]] = []
    for round_ in range(20):
        win = windows.load(table, "k", 0)
        assert win.entries == reference
        for _ in range(rng.randrange(50, 600)):
            t = (round_ * 1000) + rng.randrange(0, 1500)
            i = len([e for e in win.entries if e[0] <= t])
            win.entries.insert(i, [t, None])
            win.changed_at(i)
        cut = len([e for e in win.entries if e[0] < round_ * 1000 - 2000])
        win.drop_head(cut)
        reference = [list(e) for e in win.entries]
        windows.save(table, win, 0)
    stored = table.data[0]
    head = stored["k"]
    if "ids" in head:
        assert set(stored) == {"k"} | {windows.chunk_key("k", i) for i in head["ids"]}, "no orphan chunks"


def test_the_first_format_is_read_and_rewritten() -> None:
    table = MemoryTable()
    table.set("k", [[T, None, 1], [T + S, None, 2]], 0)
    win = windows.load(table, "k", 0)
    assert win.entries == [[T, None, 1], [T + S, None, 2]]
    windows.save(table, win, 0)
    assert table.get("k", 0) == {"e": [[T, None, 1], [T + S, None, 2]], "n": T + S, "next": 0}


async def test_an_aggregate_over_chunks_survives_a_restart() -> None:
    ctx = FakeContext()
    step = build(VELOCITY)
    await run_step(step, [txn(account_id="A", ts=T + i) for i in range(600)], ctx)
    out, _ = await run_step(build(VELOCITY), [txn(account_id="A", ts=T + 600)], ctx)  # a new worker
    assert out[0]["velocity_60s"] == 601
