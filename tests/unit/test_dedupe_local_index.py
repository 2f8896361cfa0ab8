"""dedupe's time index is local state (issue 25): written to the stores, never to the changelog,
and rebuilt from the identifiers' changelog records when a store is restored. One index entry
per identifier; a tombstone of an identifier (expiry, erasure) takes its entry with it; a
changelog written while the index went there too still restores. The expected identifiers are
computed from the input records, not from the step."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from step_harness import FakeContext, MemoryTable, build, run_step, txn
from test_state_restore_tables import _Reader, _Record

from stream_orch.state.restore import restore_tables
from stream_orch.state.store import store_opener
from stream_orch.state.tables import LocalKeys, LocalTable
from stream_orch.steps.base import Event, LocalIndexStep
from stream_orch.steps.dedupe import BUCKET_MS, INDEX, DedupeStepImpl, index_key
from stream_orch.testing import TopologyTestDriver

REPO = Path(__file__).resolve().parents[2]
H = 3_600_000
HORIZON = 24 * H
T = 1_700_000_000_000
CHANGELOG = "seen.changelog"
PARTITIONS = (0, 1)
DEDUPE = {"step": "dedupe", "field": "txn_id", "table": "seen_txns", "horizon": "24h"}


@pytest.fixture(params=["memory", "rocksdb"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def _table(kind: str, root: Path, step: DedupeStepImpl) -> LocalTable:
    table = LocalTable("seen", CHANGELOG, store_opener(kind, root / "seen", root=root))
    assert isinstance(step, LocalIndexStep)
    table.keep_local(LocalKeys(*step.local_keys, step.derive))
    return table


def _step() -> DedupeStepImpl:
    return DedupeStepImpl(field="txn_id", table="seen", horizon_ms=HORIZON)


def _input(seed: int, n: int = 3000) -> list[list[tuple[int, str, int]]]:
    """Batches of (partition, txn_id, ts): repeats within the horizon (duplicates), after it (the
    id moves to a newer bucket), late ones, time moving on over several days."""
    rng = random.Random(seed)
    out, batch, now = [], [], T
    for _ in range(n):
        now += rng.randrange(0, 3 * 60_000)
        ts = now - rng.randrange(0, 2 * H) if rng.random() < 0.1 else now
        batch.append((rng.choice(PARTITIONS), f"id-{rng.randrange(600)}", ts))
        if len(batch) >= rng.randrange(5, 60):
            out.append(batch)
            batch = []
    return [*out, batch] if batch else out


def _prune_ref(ids: dict[str, int], cutoff: int) -> int:
    """Delete the ids prune deletes: last seen in a minute that ended at or before the cutoff."""
    gone = [k for k, v in ids.items() if v // BUCKET_MS < (cutoff + 1) // BUCKET_MS]
    for k in gone:
        del ids[k]
    return len(gone)


class _Run:
    """The step over a LocalTable as a node drives it: run, release the failed events, prune now
    and then, seal, changelog, land. Beside it the reference: the rule applied to the input."""

    def __init__(self, table: LocalTable, seed: int) -> None:
        self.step, self.table = _step(), table
        self.ctx = FakeContext({"seen": table})  # type: ignore[dict-item]
        self.log: dict[TopicPartition, list[_Record]] = {}
        self.rng = random.Random(seed)
        self.ref: dict[int, dict[str, int]] = {p: {} for p in PARTITIONS}
        self.watermark: dict[int, int] = {}
        self.offset = 0
        for p in PARTITIONS:
            table.open(p)

    async def batch(self, rows: list[tuple[int, str, int]], prune: bool = False) -> None:
        events = [
            Event(value={"txn_id": ident, "ts": ts}, partition=p, offset=self.offset + i, topic="in")
            for i, (p, ident, ts) in enumerate(rows)
        ]
        self.offset += len(rows)
        passed = await self.step.run(events, self.ctx)  # type: ignore[arg-type]
        # the reference: the rule over the batch, each event against what went before it
        view = {p: dict(ref) for p, ref in self.ref.items()}
        expected = []
        for event in events:
            p, ident, ts = event.partition, event.value["txn_id"], event.value["ts"]
            seen = view[p].get(ident)
            if seen is None or abs(ts - seen) >= HORIZON:
                view[p][ident] = ts if seen is None else max(ts, seen)
                self.watermark[p] = max(self.watermark.get(p, ts), ts)
                expected.append(event.offset)
        assert [e.offset for e in passed] == expected
        # some fail later in the batch (ids alone in it: undoing them restores the state before)
        counts: dict[tuple[int, str], int] = {}
        for p, ident, _ in rows:
            counts[(p, ident)] = counts.get((p, ident), 0) + 1
        failed = [
            e for e in passed if counts[(e.partition, e.value["txn_id"])] == 1 and self.rng.random() < 0.15
        ]
        assert self.step.release(failed) == len(failed)
        for e in failed:
            p, ident = e.partition, e.value["txn_id"]
            if ident in self.ref[p]:
                view[p][ident] = self.ref[p][ident]
            else:
                del view[p][ident]
        self.ref = view
        if prune:
            for p in PARTITIONS:
                if p in self.watermark:
                    cutoff = self.watermark[p] - HORIZON
                    assert self.step.prune(self.table, p) == _prune_ref(self.ref[p], cutoff)
        self.land()

    def land(self) -> None:
        sealed = self.table.seal()
        acked = {}
        for p, records in sealed.changelog().items():
            tp = TopicPartition(CHANGELOG, p)
            log = self.log.setdefault(tp, [])
            for key, value, _, _ in records:
                log.append(_Record(CHANGELOG, p, len(log), key, value))
            acked[(CHANGELOG, p)] = len(log) - 1
        sealed.land(acked)

    def records(self) -> list[_Record]:
        return [r for log in self.log.values() for r in log]


def _ids(table: LocalTable, p: int) -> dict[str, Any]:
    return {k: v for k, v in table.items(p) if not k.startswith(INDEX)}


def _index(table: LocalTable, p: int) -> list[str]:
    return sorted(k for k, _ in table.items(p) if k.startswith(INDEX))


def _one_entry_per_id(table: LocalTable, p: int) -> None:
    ids = _ids(table, p)
    assert _index(table, p) == sorted(index_key(v, k) for k, v in ids.items())


async def _restore(table: LocalTable, log: dict[TopicPartition, list[_Record]]) -> None:
    await restore_tables(_Reader(log, {}), [table], list(PARTITIONS))  # type: ignore[arg-type]


async def _run(kind: str, root: Path, seed: int) -> _Run:
    run = _Run(_table(kind, root / "a", _step()), seed)
    for i, rows in enumerate(_input(seed)):
        await run.batch(rows, prune=i % 7 == 6)
    return run


async def test_the_changelog_holds_only_identifiers(kind: str, tmp_path: Path) -> None:
    run = await _run(kind, tmp_path, seed=1)
    records = run.records()
    assert records and not [r for r in records if r.key.decode().startswith(INDEX)]
    for p in PARTITIONS:
        assert _ids(run.table, p) == run.ref[p]
        assert _index(run.table, p), "the index is in the local store"
        _one_entry_per_id(run.table, p)


async def test_a_restore_rebuilds_the_index_and_prune_deletes_exactly_the_expired(
    kind: str, tmp_path: Path
) -> None:
    run = await _run(kind, tmp_path, seed=2)
    restored = _table(kind, tmp_path / "b", _step())
    await _restore(restored, run.log)
    step = _step()
    for p in PARTITIONS:
        assert _ids(restored, p) == run.ref[p]
        assert _index(restored, p) == _index(run.table, p)
        _one_entry_per_id(restored, p)
        later = run.watermark[p] + 6 * H
        expected = dict(run.ref[p])
        assert step.prune(restored, p, later) == _prune_ref(expected, later - HORIZON) > 0
        restored.seal().land({})
        assert _ids(restored, p) == expected
        _one_entry_per_id(restored, p)


async def test_a_tail_restore_over_a_checkpointed_store_gives_the_same_index(
    kind: str, tmp_path: Path
) -> None:
    run = await _run(kind, tmp_path, seed=3)
    restored = _table(kind, tmp_path / "b", _step())
    half = {tp: log[: len(log) // 2] for tp, log in run.log.items()}
    await _restore(restored, half)
    await _restore(restored, run.log)  # only the tail after each checkpoint is read
    for p in PARTITIONS:
        assert _ids(restored, p) == run.ref[p]
        _one_entry_per_id(restored, p)


async def test_a_tombstone_of_an_identifier_deletes_its_index_entry(kind: str, tmp_path: Path) -> None:
    """What `stream-orch forget` writes: a tombstone of the id in its changelog partition. A
    store restored before it, and one restored from scratch, keep no entry naming the id."""
    run = await _run(kind, tmp_path, seed=4)
    erased = {p: sorted(run.ref[p])[:5] for p in PARTITIONS}
    restored = _table(kind, tmp_path / "b", _step())
    await _restore(restored, run.log)
    for p, ids in erased.items():
        log = run.log[TopicPartition(CHANGELOG, p)]
        for ident in ids:
            log.append(_Record(CHANGELOG, p, len(log), ident.encode(), None))
            del run.ref[p][ident]
    fresh = _table(kind, tmp_path / "c", _step())
    for table in (restored, fresh):
        await _restore(table, run.log)
        for p, ids in erased.items():
            assert _ids(table, p) == run.ref[p]
            assert not [k for k in _index(table, p) if k.split(INDEX)[2] in ids]
            _one_entry_per_id(table, p)


async def test_a_changelog_written_with_the_index_in_it_restores(kind: str, tmp_path: Path) -> None:
    """Before, every index entry went to the changelog, one per id and bucket it was seen in
    (a stale entry stayed until its bucket expired) and prune tombstoned them."""
    rows = [  # (key, value): what the old step wrote, batch after batch
        ("a", T), (index_key(T, "a"), 1),
        ("b", T + 1), (index_key(T + 1, "b"), 1),
        ("c", T + 2 * H), (index_key(T + 2 * H, "c"), 1),
        ("a", T + 25 * H), (index_key(T + 25 * H, "a"), 1),  # a moved; its old entry stayed
        ("b", None), (index_key(T + 1, "b"), None),  # b pruned
        ("d", T + 26 * H), (index_key(T + 26 * H, "d"), 1),
    ]  # fmt: skip
    log = {
        TopicPartition(CHANGELOG, 0): [
            _Record(CHANGELOG, 0, i, k.encode(), None if v is None else orjson.dumps(v))
            for i, (k, v) in enumerate(rows)
        ]
    }
    table = _table(kind, tmp_path, _step())
    await restore_tables(_Reader(log, {}), [table], [0])  # type: ignore[arg-type]
    assert _ids(table, 0) == {"a": T + 25 * H, "c": T + 2 * H, "d": T + 26 * H}
    _one_entry_per_id(table, 0)  # a's stale entry is not restored
    assert _step().prune(table, 0, T + 26 * H + 2 * H) == 1  # c, and only c
    table.seal().land({})
    assert _ids(table, 0) == {"a": T + 25 * H, "d": T + 26 * H}
    _one_entry_per_id(table, 0)


async def test_a_newer_bucket_replaces_the_entry_and_a_release_puts_it_back() -> None:
    step, ctx = build(DEDUPE), FakeContext()
    await run_step(step, [txn(txn_id="a", ts=T)], ctx)
    step.release([])
    table: MemoryTable = ctx.tables["seen_txns"]
    passed = await step.run([Event(value=txn(txn_id="a", ts=T + 25 * H), topic="in")], ctx)  # type: ignore[arg-type]
    assert dict(table.items(0)) == {"a": T + 25 * H, index_key(T + 25 * H, "a"): 1}
    assert step.release(passed) == 1  # it failed later in the batch
    assert dict(table.items(0)) == {"a": T, index_key(T, "a"): 1}


def test_derive_follows_the_bucket_of_the_value() -> None:
    step = _step()
    assert step.derive("a", None, T) == [(index_key(T, "a"), 1)]
    assert step.derive("a", T, T + 1) == []  # the same minute
    moved = [(index_key(T, "a"), None), (index_key(T + BUCKET_MS, "a"), 1)]
    assert step.derive("a", T, T + BUCKET_MS) == moved
    assert step.derive("a", T, None) == [(index_key(T, "a"), None)]
    assert step.derive("a", None, None) == []


FRAUD = REPO / "topologies" / "fraud_detection.yaml"
SCHEMAS = REPO / "schemas"


def test_a_worker_s_dedupe_table_sends_only_identifiers_to_its_changelog() -> None:
    """Through the node's pipeline (the test driver runs the worker's): the dedupe step declares
    its index local on its table, and only ids reach ``seen_txns``' changelog."""
    T0 = 1_767_225_600_000
    customer = {
        "customer_id": 123, "name": "Jane", "email": "jane@example.com", "home_country": "DE",
        "risk_tier": "low", "avg_amount": 100.0,
    }  # fmt: skip

    def payment(i: int) -> dict[str, Any]:
        return {
            "txn_id": f"t{i % 15}", "account_id": f"A-{i % 15}", "customer_id": 123,
            "amount": 10.0, "currency": "EUR", "merchant_id": "M-1",
            "channel": "card_present", "country": "DE", "ts": T0 + i * 61_000,
        }  # fmt: skip

    with TopologyTestDriver(FRAUD, schemas=SCHEMAS, start_ms=T0, changelogs=True) as d:
        d.pipe("customers", customer)
        for i in range(20):  # 5 duplicates, every id in a minute of its own
            d.pipe("transactions", payment(i))
        keys = [r.key for r in d.records("fraud_detection.seen_txns.changelog")]
        assert sorted(keys) == sorted(f"t{i}" for i in range(15)), "one record per id, no index"
        state = d.table("seen_txns")
        index = [k for k in state if k.startswith(INDEX)]
        assert sorted(k.split(INDEX)[2] for k in index) == sorted(f"t{i}" for i in range(15))


def test_the_index_stays_in_the_changelog_when_another_step_writes_the_table() -> None:
    """Another step's keys could fall in the index's range: the node then keeps no local keys."""
    from types import SimpleNamespace

    from stream_orch.runtime.pipeline import declare_local_keys

    step = _step()
    writes = SimpleNamespace(table="seen", writes_table=True)
    reads = SimpleNamespace(table="seen", writes_table=False)
    table = LocalTable("seen", CHANGELOG)
    declare_local_keys([step], [writes, reads], {"seen": table})  # type: ignore[list-item]
    assert table.local is not None and table.local.holds(index_key(T, "a")) and not table.local.holds("a")
    declare_local_keys([step, object()], [writes, writes], {"seen": table})  # type: ignore[list-item]
    assert table.local is None
