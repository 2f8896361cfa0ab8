"""Tables over stores without a broker: overlays, landing with checkpoints, dropping a failed
batch, and RocksDB stores that survive a reopen or are rebuilt when corrupt."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from stream_orch.state.rocks import RocksStore, StoreCorrupt
from stream_orch.state.store import TOMBSTONE, MemoryStore, store_opener
from stream_orch.state.tables import LocalTable


@pytest.fixture(params=["memory", "rocksdb"])
def table(request: pytest.FixtureRequest, tmp_path: Path) -> LocalTable:
    t = LocalTable("t", "t.changelog", store_opener(request.param, tmp_path / "t", root=tmp_path))
    t.open(0)
    yield t
    t.close()


def test_a_batch_reads_its_own_writes_and_the_store_sees_them_only_once_landed(table: LocalTable) -> None:
    table.set("a", 1, 0)
    assert table.get("a", 0) == 1
    sealed = table.seal()
    assert table.get("a", 0) == 1, "a sealed batch is read through while it is delivered"
    assert table._stores[0].get("a") is None, "nothing reaches the store before the batch lands"
    assert sealed.changes() == [(0, b"a", b"1")]
    sealed.land({("t.changelog", 0): 41})
    assert table._stores[0].get("a") == 1
    assert table.checkpoint(0) == 42, "the checkpoint is the next changelog offset to read"


def test_a_failed_batch_leaves_the_store_as_it_was(table: LocalTable) -> None:
    table.set("a", 1, 0)
    table.seal().land({("t.changelog", 0): 0})
    table.set("a", 2, 0)
    table.delete("a", 0)
    first = table.seal()
    table.set("b", 3, 0)  # the next batch, processed while the first is delivered
    assert table.get("a", 0) is None and table.get("b", 0) == 3
    table.drop_pending()
    assert first.overlay[0]["a"] is TOMBSTONE
    assert (table.get("a", 0), table.get("b", 0)) == (1, None)
    assert table.checkpoint(0) == 1


def test_items_merge_the_store_with_the_batches_in_flight(table: LocalTable) -> None:
    table.set("a", 1, 0)
    table.set("b", 2, 0)
    table.seal().land({("t.changelog", 0): 1})
    table.delete("a", 0)
    table.set("c", 3, 0)
    assert dict(table.items(0)) == {"b": 2, "c": 3}


def test_a_rocksdb_store_keeps_data_and_checkpoint_across_a_reopen(tmp_path: Path) -> None:
    store = RocksStore(tmp_path / "p0")
    store.write({"k": {"n": [1, 2]}, "gone": 1}, 10)
    store.write({"gone": TOMBSTONE}, 11)
    store.close()
    del store
    gc.collect()
    again = RocksStore(tmp_path / "p0")
    assert again.get("k") == {"n": [1, 2]} and again.get("gone") is None
    assert again.checkpoint() == 11
    assert len(again) == 1, "an exact key count, kept across the reopen"
    assert dict(again.items()) == {"k": {"n": [1, 2]}}, "the checkpoint is not a table key"
    again.close()


def test_a_corrupt_rocksdb_store_is_detected_and_started_afresh(tmp_path: Path) -> None:
    store = RocksStore(tmp_path / "t" / "0")
    store.write({"k": 1}, 5)
    store.close()
    del store
    gc.collect()
    (tmp_path / "t" / "0" / "CURRENT").write_text("not-a-manifest\n")
    with pytest.raises(StoreCorrupt):
        RocksStore(tmp_path / "t" / "0")
    rebuilt = store_opener("rocksdb", tmp_path / "t", root=tmp_path)(0)
    assert rebuilt.checkpoint() is None and rebuilt.get("k") is None, "empty: restored in full"
    rebuilt.close()


def test_memory_store_forgets_on_close() -> None:
    store = MemoryStore()
    store.write({"k": 1}, 3)
    assert (store.get("k"), store.checkpoint(), len(store)) == (1, 3, 1)
    store.destroy()
    assert (store.get("k"), store.checkpoint()) == (None, None)


def test_scan_reads_a_key_range_with_the_batches_in_flight_applied(table: LocalTable) -> None:
    for key in ("a1", "a2", "b1", "c1"):
        table.set(key, key, 0)
    table.seal().land({("t.changelog", 0): 3})
    table.delete("a2", 0)
    table.set("a3", "a3", 0)
    assert sorted(table.scan(0, "a", "b")) == [("a1", "a1"), ("a3", "a3")]
    assert sorted(table._stores[0].scan("b", "c2")) == [("b1", "b1"), ("c1", "c1")]


def test_scans_between_writes_in_a_batch_agree_with_a_reference(table: LocalTable) -> None:
    """A join scans a key range per record while it writes: the overlays keep their keys in
    order from a batch's first scan on, and every scan must still see exactly the live keys."""
    import random

    rng = random.Random(3)
    reference: dict[str, int] = {}
    in_flight = []
    for batch in range(6):
        for i in range(300):
            key = f"k{rng.randrange(400):04d}"
            if rng.random() < 0.25:
                table.delete(key, 0)
                reference.pop(key, None)
            else:
                table.set(key, i, 0)
                reference[key] = i
            if i % 7 == 0:
                lo, hi = sorted(f"k{rng.randrange(400):04d}" for _ in range(2))
                want = sorted((k, v) for k, v in reference.items() if lo <= k < hi)
                assert sorted(table.scan(0, lo, hi)) == want, (batch, i)
        in_flight.append(table.seal())
        if len(in_flight) > 1:  # batches land in order, one behind: a sealed overlay is read too
            in_flight.pop(0).land({})
    assert sorted(table.scan(0, "k", "l")) == sorted(reference.items())
