"""A landed batch leaves each store holding what its changelog records say: RocksDB stores take
the bytes ``Sealed.changes`` encoded for the changelog instead of encoding the values again, so
the two must agree key by key (new keys, overwrites, deletes, time-index keys, two partitions)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from stream_orch.state.store import store_opener
from stream_orch.state.tables import LocalTable


@pytest.mark.parametrize("kind", ["memory", "rocksdb"])
@pytest.mark.parametrize("encode_first", [True, False], ids=["changes-then-land", "land-only"])
def test_stores_hold_what_the_changelog_says(kind: str, encode_first: bool, tmp_path: Path) -> None:
    table = LocalTable("t", "t.changelog", store_opener(kind, tmp_path / "t", root=tmp_path))
    for p in (0, 1):
        table.open(p)
    table.set("old", {"n": 1}, 0)
    table.set("gone", [1, 2], 0)
    table.set("\x1e0001|gone", "gone", 1)
    table.seal().land({("t.changelog", 0): 1, ("t.changelog", 1): 0})

    table.set("old", {"n": 2, "s": "é"}, 0)  # overwrite
    table.delete("gone", 0)  # delete an existing key
    table.delete("never", 0)  # delete a key the store never had
    table.set("new", 1.5, 0)
    table.delete("\x1e0001|gone", 1)
    table.set("\x1e0002|x", "x", 1)
    table.set("plain", None, 1)
    sealed = table.seal()
    log = sealed.changes() if encode_first else None
    sealed.land({("t.changelog", 0): 9, ("t.changelog", 1): 5})

    expected = {0: {"old": {"n": 2, "s": "é"}, "new": 1.5}, 1: {"\x1e0002|x": "x", "plain": None}}
    for p, want in expected.items():
        store = table._stores[p]
        assert dict(store.items()) == want
        assert len(store) == len(want), "the key count follows the writes and deletes"
        assert store.get("gone") is None and store.get("\x1e0001|gone") is None
    assert (table.checkpoint(0), table.checkpoint(1)) == (10, 6)
    if log is not None:  # the changelog replayed on empty stores gives the same content
        replay: dict[int, dict[str, object]] = {
            0: {"old": {"n": 1}, "gone": [1, 2]},
            1: {"\x1e0001|gone": "gone"},
        }
        for p, key, raw in log:
            if raw is None:
                replay[p].pop(key.decode(), None)
            else:
                replay[p][key.decode()] = orjson.loads(raw)
        assert replay == expected
    table.close()
