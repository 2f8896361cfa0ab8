"""join's time index is local state (issue 25): written to the stores, never to the changelog, and
rebuilt from the buffered records' changelog records when a store is restored; a changelog
written while the index went there too still restores to the same store."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from step_harness import FakeContext, build
from test_state_restore_tables import _Reader, _Record

from stream_orch.state.restore import restore_tables
from stream_orch.state.store import store_opener
from stream_orch.state.tables import LocalKeys, LocalTable
from stream_orch.steps.base import Event, LocalIndexStep
from stream_orch.steps.join import INDEX

M = 60_000
T = 1_700_000_000_000
CHANGELOG = "pending.changelog"
PARTITIONS = (0, 1)
SPEC = {
    "step": "join", "topic": "settlements", "table": "pending", "key": "payment_id", "kind": "interval",
    "before": "5m", "after": "30m", "how": "left", "grace": "1m", "fields": ["amount"], "prefix": "settled_",
}  # fmt: skip


@pytest.fixture(params=["memory", "rocksdb"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def _table(kind: str, root: Path, step: Any, local: bool = True) -> LocalTable:
    table = LocalTable("pending", CHANGELOG, store_opener(kind, root / "pending", root=root))
    assert isinstance(step, LocalIndexStep)
    if local:
        table.keep_local(LocalKeys(*step.local_keys, step.derive))
    for p in PARTITIONS:
        table.open(p)
    return table


def _batches(seed: int) -> list[list[Event]]:
    """Payments and their settlements (some never, some twice, some early), event time moving on
    over hours: matched, unmatched and expired records in every state."""
    rng = random.Random(seed)
    events: list[tuple[int, Event]] = []
    for i in range(400):
        pid, t, p = f"P{i}", T + i * 20_000, rng.choice(PARTITIONS)
        events.append((t, _event("payments", pid, t, p, i, 10.0)))
        for n in range(rng.choice((0, 1, 1, 1, 2))):
            ts = t + rng.randrange(-6 * M, 35 * M)
            events.append(
                (ts + rng.randrange(0, M), _event("settlements", pid, ts, p, 10_000 + i * 3 + n, 9.0))
            )
    events.sort(key=lambda te: te[0])
    out, batch = [], []
    for _, event in events:
        batch.append(event)
        if len(batch) >= rng.randrange(3, 40):
            out.append(batch)
            batch = []
    return [*out, batch] if batch else out


def _event(topic: str, pid: str, ts: int, p: int, offset: int, amount: float) -> Event:
    value = {"payment_id": pid, "ts": ts, "amount": amount}
    return Event(value, pid.encode(), b"{}", [], topic, p, offset, ts, 0, topic, p, offset)


async def _run(table: LocalTable) -> tuple[dict[TopicPartition, list[_Record]], list[tuple[str, str]]]:
    step = build(SPEC)
    ctx = FakeContext({"pending": table})  # type: ignore[dict-item]
    log: dict[TopicPartition, list[_Record]] = {}
    out = []
    for batch in _batches(5):
        out += [(e.value["payment_id"], e.value["join_status"]) for e in await step.run(batch, ctx)]
        sealed = table.seal()
        acked = {}
        for p, records in sealed.changelog().items():
            tp = TopicPartition(CHANGELOG, p)
            part = log.setdefault(tp, [])
            for key, value, _, _ in records:
                part.append(_Record(CHANGELOG, p, len(part), key, value))
            acked[(CHANGELOG, p)] = len(part) - 1
        sealed.land(acked)
    return log, out


def _contents(table: LocalTable, p: int) -> dict[str, Any]:
    return dict(table.items(p))


async def test_the_changelog_holds_no_index_and_a_restore_rebuilds_it(kind: str, tmp_path: Path) -> None:
    table = _table(kind, tmp_path / "a", build(SPEC))
    log, out = await _run(table)
    assert {s for _, s in out} == {"matched", "unmatched"}
    records = [r for part in log.values() for r in part]
    assert records and not [r for r in records if r.key.decode().startswith(INDEX)]
    restored = _table(kind, tmp_path / "b", build(SPEC))
    await restore_tables(_Reader(log, {}), [restored], list(PARTITIONS))  # type: ignore[arg-type]
    for p in PARTITIONS:
        held = _contents(table, p)
        assert [k for k in held if k.startswith(INDEX)], "the index is in the local store"
        assert _contents(restored, p) == held


async def test_a_changelog_with_the_index_in_it_restores_to_the_same_store(kind: str, tmp_path: Path) -> None:
    """As main wrote it: every index entry went to the changelog too."""
    before = _table(kind, tmp_path / "a", build(SPEC), local=False)
    log, out = await _run(before)
    assert [r for part in log.values() for r in part if r.key.decode().startswith(INDEX)]
    now = _table(kind, tmp_path / "b", build(SPEC))
    assert (await _run(now))[1] == out
    restored = _table(kind, tmp_path / "c", build(SPEC))
    await restore_tables(_Reader(log, {}), [restored], list(PARTITIONS))  # type: ignore[arg-type]
    for p in PARTITIONS:
        assert _contents(restored, p) == _contents(now, p) == _contents(before, p)


def test_a_later_match_leaves_the_index_entry_and_a_compacted_rewrite_restores_as_paired() -> None:
    """A left record matched when a right record arrives is rewritten with "m" and its entry kept
    at 1 (its expiry reads it), as run writes it; a changelog compacted down to the rewrite
    restores the entry at 2: the same outputs, without the read."""
    step = build(SPEC)
    entry = f"L\x1fP1\x1f{T:015d}\x1f{1:015d}"
    index = f"{INDEX}L{T + 31 * M:015d}{INDEX}{entry}"
    waiting = {"v": {"payment_id": "P1", "ts": T}, "m": False, "k": "P1", "c": ["payments", 0, 1, T]}
    matched = {**waiting, "m": True}
    assert step.derive(entry, None, waiting) == [(index, 1)]
    assert step.derive(entry, waiting, matched) == []  # the later match: the entry stays at 1
    assert step.derive(entry, None, matched) == [(index, 2)]  # came matched, or compacted
    assert step.derive(entry, matched, None) == [(index, None)]
