"""RocksDB stores (rocksdict): one database per table partition under the worker's state folder.

The checkpoint lives in the database under a key no table key can have (table keys are text,
this one starts with a NUL byte), written in the same WriteBatch as the data it covers. A store
that cannot be opened or read (corrupt files, a foreign format) is reported by
:func:`open_store` as :class:`StoreCorrupt`; the caller destroys it and restores from the
changelog's beginning.

Layout and tuning, measured with ``python -m benchmarks.state`` (tens of millions of dedupe ids):

* Keys that start with the ASCII record separator (``\x1e``, the time index the dedupe step keeps
  beside its identifiers) live in their own column family, ``index``, written in the same
  WriteBatch. Index keys grow with time while identifiers are spread over their own key space;
  in one LSM tree every flushed file spanned both, so each compaction rewrote the identifiers
  between them and write work grew with the store. In two trees both are appended to cheaply.
* Bloom filters (10 bits per key), so looking up an identifier that is not there (nearly every
  dedupe lookup, and the existence check of every write) costs no data block read. Filters and
  index blocks are partitioned and kept in one block cache shared by the process's stores
  (``BLOCK_CACHE_BYTES``), so memory stays bounded whatever the stores' size.
* Memtables: one write buffer manager for the whole process (``MEMTABLES_BYTES``), 16 MB
  memtables and a 64 MB WAL bound per store. With RocksDB's defaults (64 MB memtables per column
  family, no shared bound) a fraud worker's twelve stores kept every dedupe id of a 30-minute
  soak in memory, never flushed: RSS 193 -> 949 MB at 2k events/s.
* A write checks which of its keys exist (for the exact key count) with one ``key_may_exist``
  per key and one multi-get for the keys the filters cannot rule out.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
from rocksdict import (
    BlockBasedIndexType,
    BlockBasedOptions,
    Cache,
    Options,
    Rdict,
    ReadOptions,
    WriteBatch,
    WriteBufferManager,
)

from stream_orch.state.store import TOMBSTONE

CHECKPOINT_KEY = b"\x00stream-orch.checkpoint"
COUNT_KEY = b"\x00stream-orch.count"  # exact number of keys: RocksDB only estimates it
FORMAT_KEY = b"\x00stream-orch.format"
FORMAT = b"2"  # 2: the index column family (a store of format 1 is rebuilt from its changelog)
INDEX_PREFIX = "\x1e"
INDEX_END = "\x1f"  # index keys are those in [INDEX_PREFIX, INDEX_END)
INDEX_CF = "index"
BLOCK_CACHE_BYTES = 64 << 20  # shared by every store of the process
MEMTABLES_BYTES = 64 << 20  # all memtables of the process's stores together
MEMTABLE_BYTES = 16 << 20  # one memtable (per store and column family)
WAL_BYTES = 64 << 20  # per store: beyond it the column families holding the oldest log flush


class StoreCorrupt(Exception):
    """A store on disk that cannot be trusted; it is rebuilt from the changelog."""


@functools.cache
def _block_cache() -> Cache:
    return Cache(BLOCK_CACHE_BYTES)


@functools.cache
def _write_buffers() -> WriteBufferManager:
    return WriteBufferManager(MEMTABLES_BYTES, False)


def _options() -> Options:
    table = BlockBasedOptions()
    table.set_bloom_filter(10, False)
    table.set_index_type(BlockBasedIndexType.two_level_index_search())
    table.set_partition_filters(True)
    table.set_block_cache(_block_cache())
    table.set_cache_index_and_filter_blocks(True)
    table.set_pin_top_level_index_and_filter(True)
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.create_missing_column_families(True)
    opts.set_paranoid_checks(True)
    opts.set_block_based_table_factory(table)
    opts.set_write_buffer_size(MEMTABLE_BYTES)
    opts.set_write_buffer_manager(_write_buffers())
    opts.set_max_total_wal_size(WAL_BYTES)
    return opts


def _scan(db: Rdict, start: bytes, stop: bytes) -> Iterator[tuple[bytes, bytes]]:
    # The upper bound lets RocksDB stop at `stop` inside its own skipping of deleted keys: a
    # range just past many tombstones (a join's or a window's expired entries) was walked over
    # them all, on every scan.
    bounds = ReadOptions()
    bounds.set_iterate_upper_bound(stop)
    it = db.iter(bounds)
    it.seek(start)
    while it.valid():
        key = it.key()
        if key >= stop:
            break
        yield key, it.value()
        it.next()


class RocksStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            opts = _options()
            self._db: Rdict | None = Rdict(str(path), opts, column_families={INDEX_CF: opts})
            self._index = self._db.get_column_family(INDEX_CF)
            self._index_cf = self._db.get_column_family_handle(INDEX_CF)
            found = self._db.get(FORMAT_KEY)
            checkpoint = self._db.get(CHECKPOINT_KEY)
            self._count = int(self._db.get(COUNT_KEY) or 0)
        except Exception as exc:
            self._db = None
            if "lock" in str(exc).lower():
                raise  # held by another process: not corrupt, and not ours to delete
            raise StoreCorrupt(f"{path}: {exc}") from exc
        if found is None and checkpoint is None:
            self._db.put(FORMAT_KEY, FORMAT)  # a new store
        elif found != FORMAT:
            self.close()
            raise StoreCorrupt(f"{path}: unknown format {found!r}")
        try:
            self._checkpoint = None if checkpoint is None else int(checkpoint)
        except ValueError:
            self.close()
            raise StoreCorrupt(f"{path}: unreadable checkpoint {checkpoint!r}") from None

    def get(self, key: str, default: Any = None) -> Any:
        assert self._db is not None
        db = self._index if key.startswith(INDEX_PREFIX) else self._db
        raw = db.get(key.encode())
        return default if raw is None else orjson.loads(raw)

    def _existing(self, db: Rdict, raws: list[bytes]) -> set[bytes]:
        """The keys of ``raws`` that ``db`` holds: key_may_exist is exact when it says no (a
        new key, thanks to the filters), the others are looked up in one multi-get."""
        may = db.key_may_exist
        maybe = [raw for raw in raws if may(raw)]
        if not maybe:
            return set()
        return {raw for raw, value in zip(maybe, db.get(maybe), strict=True) if value is not None}

    def write(self, changes: Mapping[str, Any], checkpoint: int | None) -> None:
        db = self._db
        assert db is not None
        batch = WriteBatch(raw_mode=True)
        count = self._count
        if changes and (min(changes) >= INDEX_END or max(changes) < INDEX_PREFIX):
            parts = [(db, [k.encode() for k in changes], list(changes.values()), None)]
        else:  # some index keys: they go to their column family
            index = {k: v for k, v in changes.items() if k.startswith(INDEX_PREFIX)}
            data = {k: v for k, v in changes.items() if not k.startswith(INDEX_PREFIX)}
            parts = [
                (target, [k.encode() for k in part], list(part.values()), cf)
                for target, part, cf in ((db, data, None), (self._index, index, self._index_cf))
                if part
            ]
        dumps = orjson.dumps
        for target, raws, values, cf in parts:
            existing = self._existing(target, raws)
            put = batch.put if cf is None else functools.partial(batch.put, column_family=cf)
            if not existing and TOMBSTONE not in values:  # only new keys (a restore, most batches)
                for raw, value in zip(raws, values, strict=True):
                    put(raw, dumps(value))
                count += len(raws)
                continue
            for raw, value in zip(raws, values, strict=True):
                existed = raw in existing
                if value is TOMBSTONE:
                    if existed:
                        batch.delete(raw, cf)
                        count -= 1
                else:
                    put(raw, dumps(value))
                    count += not existed
        batch.put(COUNT_KEY, str(count).encode())
        if checkpoint is not None:
            batch.put(CHECKPOINT_KEY, str(checkpoint).encode())
            self._checkpoint = checkpoint
        db.write(batch)
        self._count = count

    def checkpoint(self) -> int | None:
        return self._checkpoint

    def items(self) -> Iterator[tuple[str, Any]]:
        assert self._db is not None
        data = ((k, v) for k, v in self._db.items() if not k.startswith(b"\x00"))
        for key, raw in heapq.merge(self._index.items(), data, key=lambda kv: kv[0]):
            yield key.decode(), orjson.loads(raw)

    def scan(self, start: str, end: str) -> Iterator[tuple[str, Any]]:
        assert self._db is not None
        first, stop = start.encode(), end.encode()
        lo, hi = INDEX_PREFIX.encode(), INDEX_END.encode()
        parts = []
        if first < hi and stop > lo:  # the range meets the index keys
            parts.append(_scan(self._index, max(first, lo), min(stop, hi)))
        if first < lo or stop > hi:  # ... and other keys
            parts.append((k, v) for k, v in _scan(self._db, first, stop) if not k.startswith(b"\x00"))
        for key, raw in heapq.merge(*parts, key=lambda kv: kv[0]):
            yield key.decode(), orjson.loads(raw)

    def __len__(self) -> int:
        return self._count

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.glob("*") if f.is_file())

    def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            self._index = self._index_cf = None
            with contextlib.suppress(Exception):
                db.close()

    def destroy(self) -> None:
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
