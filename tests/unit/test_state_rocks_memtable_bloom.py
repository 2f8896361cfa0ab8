"""A RocksDB store with a whole-key bloom filter in its memtables (issue 25: a dedupe lookup of
an absent id skips the skiplist): every key written is found, in the memtable, after a flush and
after a reopen, absent keys are not, and the exact key count holds across many near-identical
keys (a filter's false positive must only cost a lookup, never a wrong answer)."""

from __future__ import annotations

from pathlib import Path

from stream_orch.state import rocks
from stream_orch.state.rocks import INDEX_PREFIX, RocksStore


def _keys(n: int, tag: str) -> list[str]:
    return [f"T-{tag}-{i:08d}" for i in range(n)]


def test_memtables_have_a_whole_key_filter_of_bounded_size() -> None:
    assert 0 < rocks.MEMTABLE_BLOOM_RATIO <= 0.05  # counted in MEMTABLES_BYTES: keep it small


def test_keys_are_found_and_absent_ones_are_not_through_flushes_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store"
    store = RocksStore(path)
    present = _keys(5000, "in")
    absent = _keys(5000, "out")
    for first in range(0, len(present), 1000):
        part = present[first : first + 1000]
        store.write({k: i for i, k in enumerate(part)} | {INDEX_PREFIX + k: 1 for k in part}, first)
        if first == 2000:
            assert store._db is not None
            store._db.flush()  # half in SST files, half in the memtable
    assert len(store) == 2 * len(present)
    for i, key in enumerate(present):
        assert store.get(key) == i % 1000
        assert store.get(INDEX_PREFIX + key) == 1
    assert all(store.get(key) is None for key in absent)
    # rewrites of existing keys and writes of absent ones, none read first: the count stays exact
    store.write({k: -1 for k in present[:100] + absent[:100]}, 5000)
    assert len(store) == 2 * len(present) + 100
    store.close()
    again = RocksStore(path)
    assert len(again) == 2 * len(present) + 100
    assert again.get(present[0]) == -1 and again.get(absent[0]) == -1 and again.get(absent[100]) is None
    again.close()
