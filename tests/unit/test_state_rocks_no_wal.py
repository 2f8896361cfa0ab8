"""RocksDB stores write without a WAL, every flush atomic across their column families (issue
25): a store abandoned without a flush (the process killed) reopens at an older checkpoint with
exactly the data, time index and key count of that checkpoint, never torn (data ahead of or
behind it); a clean close keeps everything."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from stream_orch.state.rocks import INDEX_PREFIX, RocksStore
from stream_orch.state.store import TOMBSTONE

BATCHES = 120
KEYS = 100  # data keys per batch, and as many index keys


def _batch(i: int) -> dict[str, Any]:
    """Batch ``i`` (written with checkpoint i + 1): new keys, their index entries, a rewrite of
    one key and a delete of one key of the batch before."""
    changes: dict[str, Any] = {f"k{i:04d}-{j:03d}": {"i": i, "pad": "x" * 60} for j in range(KEYS)}
    changes |= {f"{INDEX_PREFIX}{i:04d}-{j:03d}": i for j in range(KEYS)}
    changes["last"] = i
    if i:
        changes[f"k{i - 1:04d}-000"] = TOMBSTONE
    return changes


def _expected(checkpoint: int) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for i in range(checkpoint):
        for key, value in _batch(i).items():
            if value is TOMBSTONE:
                state.pop(key, None)
            else:
                state[key] = value
    return state


def _write_in_child(path: Path, then: str) -> None:
    """Write every batch in a child process, then ``then`` (Python) and os._exit(): no clean
    shutdown, as a kill -9. Small memtables, so that some batches reach SST files."""
    code = textwrap.dedent(f"""
        import os, sys
        sys.path[:0] = {sys.path!r}
        from pathlib import Path
        from stream_orch.state import rocks
        from tests.unit.test_state_rocks_no_wal import BATCHES, _batch
        rocks.MEMTABLE_BYTES = 256 << 10
        store = rocks.RocksStore(Path({str(path)!r}))
        for i in range(BATCHES):
            store.write(_batch(i), i + 1)
        {then}
        os._exit(0)
    """)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def _check_consistent(store: RocksStore) -> int:
    checkpoint = store.checkpoint() or 0  # None: no batch at all, nor any of its keys
    state = dict(store.items())
    assert state == _expected(checkpoint)  # data and index of that very checkpoint
    assert len(store) == len(state)  # the count of the same batch
    return checkpoint


def test_a_store_killed_before_its_last_flush_reopens_at_an_older_consistent_checkpoint(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store"
    _write_in_child(path, "pass")
    store = RocksStore(path)
    checkpoint = _check_consistent(store)
    # no WAL: what the last memtables held is gone, read again from the changelog by a restore
    # (and some batches reached SST files, or the test would prove little)
    assert 0 < checkpoint < BATCHES
    # and it goes on from there as any store does
    store.write(_batch(checkpoint), checkpoint + 1)
    assert dict(store.items()) == _expected(checkpoint + 1)
    assert len(store) == len(_expected(checkpoint + 1))
    store.close()


def test_a_clean_close_keeps_every_batch(tmp_path: Path) -> None:
    path = tmp_path / "store"
    _write_in_child(path, "store.close()")
    store = RocksStore(path)
    assert _check_consistent(store) == BATCHES
    store.close()
