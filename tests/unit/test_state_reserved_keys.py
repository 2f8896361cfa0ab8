"""Record data cannot reach a store's own bookkeeping (issue 19, item 3): a table key equal to a
reserved key of the RocksDB layout (format, checkpoint, key count) is just another key, and the
store keeps its checkpoint, its count and its format across a reopen (no rebuild)."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from step_harness import FakeContext, build, run_step, txn

from stream_orch.state.store import store_opener
from stream_orch.state.tables import LocalTable

# the keys rocks.py kept its bookkeeping under, in the key space of the table keys
RESERVED = ["\x00stream-orch.format", "\x00stream-orch.checkpoint", "\x00stream-orch.count"]
T = 1_700_000_000_000
DEDUPE = {"step": "dedupe", "field": "txn_id", "table": "seen_txns", "horizon": "24h"}


def _table(kind: str, folder: Path) -> LocalTable:
    table = LocalTable("seen_txns", "seen_txns.changelog", store_opener(kind, folder, root=folder.parent))
    table.open(0)
    return table


def _reopen(kind: str, folder: Path, table: LocalTable) -> LocalTable:
    if kind == "memory":  # nothing survives a memory store's close: check the same one
        return table
    table.close()
    gc.collect()  # rocksdict releases the database's lock when the object goes
    return _table(kind, folder)


@pytest.mark.parametrize("kind", ["memory", "rocksdb"])
def test_table_keys_equal_to_the_reserved_keys_are_plain_data(kind: str, tmp_path: Path) -> None:
    folder = tmp_path / "seen_txns"
    table = _table(kind, folder)
    data = {key: {"i": i} for i, key in enumerate(RESERVED)} | {"plain": 7}
    for key, value in data.items():
        table.set(key, value, 0)
    table.seal().land({("seen_txns.changelog", 0): 41})
    table.set(RESERVED[0], "again", 0)  # an overwrite: the count must not grow
    table.seal().land({("seen_txns.changelog", 0): 42})
    data[RESERVED[0]] = "again"

    table = _reopen(kind, folder, table)
    assert table.checkpoint(0) == 43, "the checkpoint is the one landed, not a record's value"
    assert len(table) == len(data), "the key count counts every data key once"
    assert {key: table.get(key, 0) for key in data} == data
    assert dict(table.items(0)) == data, "keys starting with NUL are listed like any other"
    assert sorted(table.scan(0, "\x00", "\x01")) == sorted((k, data[k]) for k in RESERVED)
    table.close()


@pytest.mark.parametrize("kind", ["memory", "rocksdb"])
async def test_a_dedupe_id_equal_to_a_reserved_key_neither_corrupts_nor_rewinds_the_store(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "seen_txns"
    table = _table(kind, folder)
    ctx = FakeContext({"seen_txns": table})
    records = [txn(txn_id=key, ts=T + i) for i, key in enumerate(RESERVED)]
    out, _ = await run_step(build(DEDUPE), records, ctx)
    assert [r["txn_id"] for r in out] == RESERVED
    table.seal().land({("seen_txns.changelog", 0): 99})

    table = _reopen(kind, folder, table)
    ctx.tables["seen_txns"] = table
    assert "cannot be trusted" not in caplog.text, "the store was rebuilt"
    assert table.checkpoint(0) == 100
    assert [table.get(key, 0) for key in RESERVED] == [T, T + 1, T + 2]
    out, ctx = await run_step(build(DEDUPE), records, ctx)  # the same ids again: duplicates
    assert out == [] and ctx.drop_reasons == ["duplicate"] * 3
    table.close()


def test_a_store_of_format_2_is_rebuilt_from_the_changelog(tmp_path: Path) -> None:
    """Format 2 kept its bookkeeping among the table keys, where a record may have overwritten
    it: such a store is not trusted (and the opener starts it afresh, restored in full)."""
    from rocksdict import Options, Rdict

    from stream_orch.state.rocks import INDEX_CF, RocksStore, StoreCorrupt

    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.create_missing_column_families(True)
    old = Rdict(str(tmp_path / "t" / "0"), opts, column_families={INDEX_CF: opts})
    old.put(b"\x00stream-orch.format", b"2")
    old.put(b"\x00stream-orch.checkpoint", b"5")
    old.put(b"k", b"1")
    old.close()
    del old
    gc.collect()
    with pytest.raises(StoreCorrupt, match="format None"):
        RocksStore(tmp_path / "t" / "0")
    gc.collect()
    rebuilt = store_opener("rocksdb", tmp_path / "t", root=tmp_path)(0)
    assert rebuilt.checkpoint() is None and len(rebuilt) == 0 and rebuilt.get("k") is None
    rebuilt.close()
