"""A table partition whose local store is empty (a dedupe table whose entries all expired) but whose
checkpoint lies outside its changelog (the changelog was deleted and made again, or the state
folder met another cluster) is rebuilt. `reset` took the store it had only when the store was
truthy: an empty RocksDB store has length 0, so a second instance was opened on the same folder
while the first held its lock, and the node started over on that error forever."""

from __future__ import annotations

from pathlib import Path

from stream_orch.state.store import store_opener
from stream_orch.state.tables import LocalTable


def test_an_empty_store_is_reset_without_a_second_instance(tmp_path: Path) -> None:
    table = LocalTable("seen", "t.seen.changelog", store_opener("rocksdb", tmp_path / "seen", root=tmp_path))
    store = table.open(4)
    assert len(store) == 0
    fresh = table.reset(4)
    assert fresh is not store and len(fresh) == 0 and fresh.checkpoint() is None
    assert table.open(4) is fresh
    table.close()

