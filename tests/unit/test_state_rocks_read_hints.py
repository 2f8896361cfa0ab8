"""A RocksDB store's exact key count when its writes reuse what its reads found (issue 25): reads
(gets and scans) and writes of data and index keys in any order, against a dict as the
reference; the same with a cache of stored bytes small enough to be forgotten again and again."""

from __future__ import annotations

import random
from pathlib import Path
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_orch.state import rocks
from stream_orch.state.rocks import INDEX_PREFIX, RocksStore
from stream_orch.state.store import TOMBSTONE

KEYS = [*"abcdef", *(f"{INDEX_PREFIX}{i}" for i in range(4))]  # data and index keys


def _check(store: RocksStore, reference: dict[str, int]) -> None:
    assert len(store) == len(reference)
    for key in KEYS:
        assert store.get(key) == reference.get(key)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_the_key_count_stays_exact_whatever_was_read_before_a_write(tmp_path_factory, seed: int) -> None:
    _reads_and_writes(tmp_path_factory, seed)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cached=st.integers(1, 8))
def test_values_and_count_stay_exact_when_the_cache_forgets(tmp_path_factory, seed: int, cached: int) -> None:
    with mock.patch.object(rocks, "CACHED_BYTES", cached):  # values of 1 or 2 bytes: 1 to 8 kept
        _reads_and_writes(tmp_path_factory, seed)


def _reads_and_writes(tmp_path_factory, seed: int) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    path: Path = tmp_path_factory.mktemp("hints") / "0"
    store = RocksStore(path)
    reference: dict[str, int] = {}
    try:
        for step in range(40):
            for key in rng.sample(KEYS, rng.randint(0, 4)):  # a batch reads some keys ...
                assert store.get(key) == reference.get(key)
            if rng.random() < 0.5:  # ... or a range of them (a scan's keys exist, too)
                start, end = sorted(rng.sample([*KEYS, INDEX_PREFIX + "9"], 2))
                found = sorted(store.scan(start, end))
                assert found == sorted((k, v) for k, v in reference.items() if start <= k < end)
            changes: dict[str, object] = {}
            for key in rng.sample(KEYS, rng.randint(0, 5)):  # ... and writes or deletes others
                changes[key] = TOMBSTONE if rng.random() < 0.35 else step
            store.write(changes, step)
            for key, value in changes.items():
                if value is TOMBSTONE:
                    reference.pop(key, None)
                else:
                    reference[key] = value  # type: ignore[assignment]
            assert len(store) == len(reference)
            kept = sum(map(len, store._cache.values()))
            assert store._cached == kept <= rocks.CACHED_BYTES  # what it holds, exactly
        _check(store, reference)
        store.close()
        store = RocksStore(path)
        _check(store, reference)  # the count written with the data, as counted
    finally:
        store.close()


def test_a_key_read_as_absent_and_written_since_is_counted_once_when_deleted(tmp_path: Path) -> None:
    store = RocksStore(tmp_path / "0")
    try:
        store.write({"other": 1}, 1)
        assert store.get("k") is None  # read: absent
        store.write({"k": 1}, 2)  # written since: the read's finding no longer holds
        store.write({"k": TOMBSTONE}, 3)
        assert len(store) == 1
        assert store.get("k") is None and store.get("other") == 1
    finally:
        store.close()


class _FailingWrites:
    """The store's RocksDB handle, whose write fails (a full disk): everything else passes."""

    def __init__(self, db: object) -> None:
        self._real = db

    def write(self, batch: object, write_opt: object = None) -> None:
        raise OSError("injected: no space left on device")

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)


def test_a_write_that_fails_leaves_values_count_and_checkpoint_as_they_were(tmp_path: Path) -> None:
    """A batch lands whole or not at all: the values a failed write cached as it went are not
    served afterwards, and neither its count nor its checkpoint is taken."""
    store = RocksStore(tmp_path / "0")
    try:
        store.write({"k": 1, "other": 1}, 1)
        assert store.get("k") == 1  # read: its bytes kept
        real = store._db
        store._db = _FailingWrites(real)  # type: ignore[assignment]
        try:
            store.write({"k": 2, "new": 1}, 2)
        except OSError:
            pass
        else:
            raise AssertionError("the injected failure did not happen")
        store._db = real
        assert store.get("k") == 1 and store.get("new") is None
        assert len(store) == 2 and store.checkpoint() == 1
    finally:
        store.close()


def test_rewriting_one_key_does_not_push_the_others_out(tmp_path: Path) -> None:
    """The bound counts the bytes kept now: a key rewritten batch after batch (an aggregate's
    window) replaces its own bytes. Counting each rewrite's bytes on top emptied the cache of
    every other key after CACHED_BYTES of rewrites, and their next reads went to RocksDB."""
    with mock.patch.object(rocks, "CACHED_BYTES", 64):
        store = RocksStore(tmp_path / "0")
        try:
            store.write({"other": "x" * 10, "hot": 0}, 1)
            assert store.get("other") == "x" * 10 and store.get("hot") == 0  # both read: kept
            for step in range(1, 200):  # 200 rewrites of a few bytes: far more than 64 in all
                store.write({"hot": step}, step + 1)
            with mock.patch.object(store, "_db", wraps=store._db) as db:
                assert store.get("other") == "x" * 10
                assert store.get("hot") == 199
                db.get.assert_not_called()  # both from the kept bytes
        finally:
            store.close()
