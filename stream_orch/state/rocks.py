"""RocksDB stores (rocksdict): one database per table partition under the worker's state folder.

The store's own bookkeeping (its format, its checkpoint, its exact key count) lives in a column
family of its own, ``meta``, written in the same WriteBatch as the data it covers. Table keys
never reach it: any string is a table key (record data picks many of them, a dedupe id or a join
key), so no key of the data's key space can be reserved. Up to format 2 the bookkeeping sat among
the table keys under NUL-prefixed keys, which a record could overwrite; such a store has no
``meta`` format and is rebuilt. A store that cannot be opened or read (corrupt files, a foreign
or older format) is reported by :class:`RocksStore` as :class:`StoreCorrupt`; the caller
destroys it and restores from the changelog's beginning.

No write-ahead log (as Kafka Streams runs its stores): the changelog is the durable copy, a store
a cache of a prefix of it that its checkpoint names. Writes skip the WAL (``disable_wal``), so
what a crash keeps is what RocksDB had flushed to SST files, and every flush is an atomic flush
(``atomic_flush``): RocksDB switches the memtables of all column families at one point between
two write batches and records their files in the MANIFEST in one atomic group, all or none.
Automatic flushes (a memtable full, the shared write buffer budget) take every column family of
the store; so does the shutdown flush that :meth:`RocksStore.close` asks for. A manual flush
would take only the families named (rocksdict's ``flush`` names one: never called here). So a
store on disk after a crash (kill -9, power loss) is the state after some write batch N, with
data, index, count and checkpoint of that same batch, N at or before the last one written: an
older checkpoint, never torn (data ahead of or behind its checkpoint). The restore path then
does what it does after any older checkpoint (a worker stopped for a while, a restore cut short):
it checks the checkpoint against the changelog (within beginning..end, else a rebuild) and
replays from it, in batches each with its checkpoint. Why that is right:

* Batches land only once the changelog has them (acknowledged, or committed in the batch's
  transaction: ``Sealed.land``), so every checkpoint on disk names records the changelog holds;
  replaying from an older one reads them again.
* Compaction keeps each key's last record, and a key last written before the checkpoint is in
  the store as of it; so replaying any tail from a consistent checkpoint ends at the changelog's
  state, as a restore cut short by a crash always did (this path is not new).
* Local keys (dedupe's time index) are written in the same batches as the keys they derive from,
  so they are as old as the checkpoint too; ``derive`` rebuilds them from each replayed record
  and the key's value before it, which the store holds as of the checkpoint, as in any restore.
* The exact key count is in the same batch: it matches the data it counts.

What is lost in a crash is what the memtables held (at most ``MEMTABLES_BYTES`` for the whole
process), read again from the changelog at the restart. A clean close flushes, so a clean
restart reads nothing. Without a WAL there is no WAL size to bound (``max_total_wal_size``, 64 MB
per store before: it flushed the families holding the oldest log) and no WAL in the state folder.
Measured (issue 25, 2 shared cores): ``RocksStore.write`` of 12 stores, batches of 666 random ids
and index keys, 6 alternating pairs: 1.31 -> 1.18 µs per key (0.90, pairs 0.72-1.03); a fraud
worker in-run against the WAL (100k records, 31 rounds): CPU per event 0.981 (0.85-1.26, 20
rounds of 31 below 1), about the 2 % the write figure predicts for ~3 keys per event, at the
noise floor.

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
* Memtables: one write buffer manager for the whole process (``MEMTABLES_BYTES``) and 16 MB
  memtables (and a 64 MB WAL bound per store, while there was a WAL: above). With RocksDB's
  defaults (64 MB memtables per column family, no shared bound) a fraud worker's twelve stores
  kept every dedupe id of a 30-minute soak in memory, never flushed: RSS 193 -> 949 MB at 2k events/s.
* Each memtable has a whole-key bloom filter (``MEMTABLE_BLOOM_RATIO`` of its size, allocated in
  the memtable, so inside ``MEMTABLES_BYTES``). Without it a lookup of an absent key (nearly every
  dedupe read, the existence check of every new index key) walks the memtable's skiplist, a chain
  of cache misses once it holds MBs: 0.47 µs per absent get with 2k keys in one memtable, 1.9 µs
  at 200k; with the filter 0.2 µs flat. This, and one filter probe per SST file of the column
  family (about 5 per event at a million ids), is why a fraud worker's CPU per event grew with its
  state (issue 25), not background work: ``benchmarks/state_growth.py`` (12 stores, the real
  steps, 1M events) measured 15 -> 25-28 ms per 1k events from the first 100k to the last ones,
  the process's CPU within 2 ms of its main thread's (flush and compaction are a small part); no
  compression, an earlier L0 compaction (2 files), 4 MB memtables and unpartitioned filters did
  not change it beyond the noise. With the filter (6 alternating pairs, medians): first 100k 14.7
  -> 14.2 ms per 1k (ratio 0.90), last 300k 24.9 -> 21.8 (0.86); time in ``get`` 0.55x and 0.60x.
  What is left of the growth is likely the SST files' filter probes and memtable inserts
  (``write`` 6 -> 8.5 ms per 1k; not taken apart). In the fraud worker, where RocksDB calls are a
  sixth of the main thread at 1M records, in-run A/B against the store without the filter:
  cpu_s_per_1k ratio median 0.955 over 10 rounds at 300k records (0.85-1.07), 0.98 over 8 at
  1M (0.93-1.07): a few percent, near the noise; peak RSS +5 MB (300 -> 305 MB).
* A write checks which of its keys exist (for the exact key count) with one ``key_may_exist``
  per key and one multi-get for the keys the filters cannot rule out, except for the keys the
  store has read since their last write: a read already told whether they exist (a dedupe id
  and an aggregate's key are read by their step before it writes them). In a fraud worker
  (issue 25) that spared about 60 % of the checks. A scan's keys count as read: a join deletes
  the time index entries its expiry scanned, and rewrites a left record its scan matched (in
  process, 40k join records: 4.8 % fewer instructions per record, 5.4 % in the other order).
* The stored bytes of keys read or rewritten lately are kept (``CACHED_BYTES`` per store) and
  decoded per read: an aggregate's window, rewritten batch after batch, is read again without a
  lookup (a hit 0.7 µs less). New keys (dedupe ids, index entries) are not kept. The bound
  counts the bytes held now: it first counted every rewrite's bytes on top of the ones they
  replaced, so 2 MB of rewrites emptied it, never in a 100k-record run and a few times per
  store in a 1 M one. Counting what is held, ``benchmarks/state_growth.py`` (1 M events, 2
  alternating pairs, last 300k events): time in ``get`` 6.0 -> 3.6 µs per event, the aggregate
  step 7.8 -> 5.7; the process's CPU per event 21.9 -> 21.3 (the pairs 21.3/21.6, 22.5/21.1).
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
    WriteOptions,
)

from stream_orch.state.store import TOMBSTONE

# in the meta column family, never among the table keys
CHECKPOINT_KEY = b"checkpoint"
COUNT_KEY = b"count"  # exact number of keys: RocksDB only estimates it
FORMAT_KEY = b"format"
# 2: the index column family; 3: the meta column family (older stores are rebuilt from their changelog)
FORMAT = b"3"
INDEX_PREFIX = "\x1e"
INDEX_END = "\x1f"  # index keys are those in [INDEX_PREFIX, INDEX_END)
INDEX_CF = "index"
META_CF = "meta"
# keys read since the store's last write: at most this many kept (then forgotten: the
# existence check asks RocksDB again, as for any key not read)
READ_HINTS = 200_000
# bytes of values a store keeps for reads, the values it holds now (a rewrite replaces its key's
# bytes; beyond the bound all are forgotten at once): 20,000 windows of a few entries, or 200 of
# a hot key's 10 KB chunks
CACHED_BYTES = 2 << 20
# about 100 bytes per batch; a full one flushes the store's data too (atomic flush): 1 MB is
# some 10,000 batches (64 KB flushed every ~650, small L0 files at a low batch size)
META_MEMTABLE_BYTES = 1 << 20
BLOCK_CACHE_BYTES = 64 << 20  # shared by every store of the process
MEMTABLES_BYTES = 64 << 20  # all memtables of the process's stores together
MEMTABLE_BYTES = 16 << 20  # one memtable (per store and column family)
# a whole-key bloom filter per memtable, this share of its size (counted in MEMTABLES_BYTES):
# 320 KB for 16 MB, about 11 bits a key when the memtable is full of dedupe ids
MEMTABLE_BLOOM_RATIO = 0.02


_loads = orjson.loads


class StoreCorrupt(Exception):
    """A store on disk that cannot be trusted; it is rebuilt from the changelog."""


@functools.cache
def _block_cache() -> Cache:
    return Cache(BLOCK_CACHE_BYTES)


@functools.cache
def _write_buffers() -> WriteBufferManager:
    return WriteBufferManager(MEMTABLES_BYTES, False)


def _options(memtable_bytes: int | None = None) -> Options:
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
    opts.set_write_buffer_size(MEMTABLE_BYTES if memtable_bytes is None else memtable_bytes)
    opts.set_memtable_prefix_bloom_ratio(MEMTABLE_BLOOM_RATIO)  # no prefix extractor: whole keys
    opts.set_memtable_whole_key_filtering(True)
    opts.set_write_buffer_manager(_write_buffers())
    # no WAL: every flush must cut all column families at one batch (module docstring)
    opts.set_atomic_flush(True)
    return opts


@functools.cache
def _no_wal() -> WriteOptions:
    opts = WriteOptions()
    opts.disable_wal = True  # a property in rocksdict 0.3.29, though its stub says a method
    return opts


def _empty(db: Rdict) -> bool:
    it = db.iter()
    it.seek_to_first()
    return not it.valid()


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
            families = {INDEX_CF: opts, META_CF: _options(META_MEMTABLE_BYTES)}
            self._db: Rdict | None = Rdict(str(path), opts, column_families=families)
            self._index = self._db.get_column_family(INDEX_CF)
            self._index_cf = self._db.get_column_family_handle(INDEX_CF)
            self._meta = self._db.get_column_family(META_CF)
            self._meta_cf = self._db.get_column_family_handle(META_CF)
            found = self._meta.get(FORMAT_KEY)
            checkpoint = self._meta.get(CHECKPOINT_KEY)
            self._count = int(self._meta.get(COUNT_KEY) or 0)
            new = found is None and _empty(self._db) and _empty(self._index)
        except Exception as exc:
            self._db = None
            if "lock" in str(exc).lower():
                raise  # held by another process: not corrupt, and not ours to delete
            raise StoreCorrupt(f"{path}: {exc}") from exc
        if new:
            self._meta.put(FORMAT_KEY, FORMAT)
        elif found != FORMAT:  # None: format 2 or older (its bookkeeping among the table keys)
            self.close()
            raise StoreCorrupt(f"{path}: format {found!r}, not {FORMAT!r}")
        try:
            self._checkpoint = None if checkpoint is None else int(checkpoint)
        except ValueError:
            self.close()
            raise StoreCorrupt(f"{path}: unreadable checkpoint {checkpoint!r}") from None
        # Whether a key exists, as a read found it, for the keys read since the last write and
        # since the one before (a batch's reads happen while the batch before it is still to be
        # written). Only a write changes what exists, and each write drops the hints of the keys
        # it writes, so a hint is true until the key's next write: the count stays exact.
        self._read: dict[bytes, bool] = {}
        self._read_before: dict[bytes, bool] = {}
        # The stored bytes of keys that exist, for those read or rewritten lately (see
        # CACHED_BYTES): a key rewritten batch after batch (an aggregate's window) is read again
        # without a RocksDB lookup. Bytes, decoded per read as before: nothing a step does to
        # what it read can change them. Each write updates or drops the keys it writes.
        self._cache: dict[str, bytes] = {}
        self._cached = 0  # bytes of the values kept (what the cache holds now)

    def get(self, key: str, default: Any = None) -> Any:
        # No `assert self._db`: a closed store's _db and _index are None, and reading one raises
        # anyway. The range test is startswith(INDEX_PREFIX) without the method call.
        raw = self._cache.get(key)
        if raw is not None:
            return _loads(raw)
        encoded = key.encode()
        raw = (self._index if INDEX_PREFIX <= key < INDEX_END else self._db).get(encoded)  # type: ignore[union-attr]
        read = self._read
        if raw is None:
            if len(read) >= READ_HINTS:
                read.clear()
            read[encoded] = False
            return default
        if len(read) >= READ_HINTS:
            read.clear()
        read[encoded] = True
        self._keep(key, raw)
        return _loads(raw)

    def _keep(self, key: str, raw: bytes) -> None:
        """Keep ``raw`` as ``key``'s bytes (what the store holds for it now)."""
        size = len(raw)
        old = self._cache.get(key)
        # the bytes kept now: a rewrite replaces its key's older bytes. Counting those too emptied
        # an aggregate's windows after 2 MB of rewrites, a few times per store in a 1 M-record run
        cached = self._cached + size - (0 if old is None else len(old))
        if cached > CACHED_BYTES:
            self._cache.clear()  # the key's older bytes, if kept, go too
            cached = size
            if size > CACHED_BYTES:  # too large to keep at all
                self._cached = 0
                return
        self._cached = cached
        self._cache[key] = raw

    def write(
        self,
        changes: Mapping[str, Any],
        checkpoint: int | None,
        encoded: Mapping[str, bytes | None] | None = None,
    ) -> None:
        """One WriteBatch: the changes, the exact key count and the checkpoint.

        Whether a key existed (for the count) is what a read since its last write found, else
        key_may_exist, exact when it says no (a new key, thanks to the filters), and one
        multi-get per column family for the keys it cannot rule out. One pass over the changes
        sorts them into those known and those to ask RocksDB about (a pass per column family,
        then one to encode and one to check, cost a third more)."""
        db = self._db
        assert db is not None
        if encoded is None:  # a restore, a test: encode here (None marks a deleted key)
            dumps = orjson.dumps
            # copied out of orjson's page-sized buffer: the cache may keep them
            encoded = {
                k: None if v is TOMBSTONE else memoryview(dumps(v)).tobytes() for k, v in changes.items()
            }
        batch = WriteBatch(raw_mode=True)
        put, delete = batch.put, batch.delete
        index_cf = self._index_cf
        read, before = self._read, self._read_before
        cache, keep = self._cache, self._keep
        count = self._count
        written: list[bytes] = []
        ask_data: list[tuple[str, bytes, bytes | None]] = []  # existence unknown: asked below
        ask_index: list[tuple[str, bytes, bytes | None]] = []
        for key, value in encoded.items():
            raw = key.encode()
            written.append(raw)
            in_index = INDEX_PREFIX <= key < INDEX_END  # the keys that start with INDEX_PREFIX
            if key in cache:  # it exists
                found = True
            else:
                found = read.get(raw)
                if found is None:
                    found = before.get(raw)
                    if found is None:
                        (ask_index if in_index else ask_data).append((key, raw, value))
                        continue
            if value is None:
                if found:
                    delete(raw, index_cf if in_index else None)
                    count -= 1
                    dropped = cache.pop(key, None)
                    if dropped is not None:
                        self._cached -= len(dropped)
            else:
                put(raw, value, index_cf if in_index else None)
                if found:
                    keep(key, value)  # rewritten: likely read again (a new key is not kept)
                else:
                    count += 1
        for target, cf, asked in ((db, None, ask_data), (self._index, index_cf, ask_index)):
            if not asked:
                continue
            may = target.key_may_exist
            maybe = [raw for _, raw, _ in asked if may(raw)]
            existing = (
                {raw for raw, value in zip(maybe, target.get(maybe), strict=True) if value is not None}
                if maybe
                else ()
            )
            for key, raw, value in asked:
                existed = raw in existing
                if value is None:
                    if existed:
                        delete(raw, cf)
                        count -= 1
                else:
                    put(raw, value, cf)
                    if existed:
                        keep(key, value)
                    else:
                        count += 1
        batch.put(COUNT_KEY, str(count).encode(), self._meta_cf)
        if checkpoint is not None:
            batch.put(CHECKPOINT_KEY, str(checkpoint).encode(), self._meta_cf)
        self._read, self._read_before = {}, read  # the older hints go
        try:
            db.write(batch, _no_wal())
        except BaseException:
            # the cache took this batch's values as it went: none of them landed
            self._cache, self._cached = {}, 0
            self._read, self._read_before = {}, {}
            raise
        if checkpoint is not None:
            self._checkpoint = checkpoint
        self._count = count
        if read:
            pop = read.pop
            for raw in written:
                pop(raw, None)  # written: what the read found no longer holds

    def checkpoint(self) -> int | None:
        return self._checkpoint

    def items(self) -> Iterator[tuple[str, Any]]:
        assert self._db is not None
        for key, raw in heapq.merge(self._index.items(), self._db.items(), key=lambda kv: kv[0]):
            yield key.decode(), orjson.loads(raw)

    def scan(self, start: str, end: str) -> Iterator[tuple[str, Any]]:
        assert self._db is not None
        first, stop = start.encode(), end.encode()
        lo, hi = INDEX_PREFIX.encode(), INDEX_END.encode()
        parts = []
        if first < hi and stop > lo:  # the range meets the index keys
            parts.append(_scan(self._index, max(first, lo), min(stop, hi)))
        if first < lo or stop > hi:  # ... and other keys
            parts.append(_scan(self._db, first, stop))
        if not parts:  # an empty range
            return
        # one column family (nearly every scan: a key range, or a time index): no merge
        found = parts[0] if len(parts) == 1 else heapq.merge(*parts, key=lambda kv: kv[0])
        # a scan is a read: the keys it finds exist, so their deletion or rewrite in the batch (a
        # join's matched or expired entries, the time index entries expiry scans) needs no
        # key_may_exist and multi-get in write()
        read = self._read
        loads = orjson.loads
        for key, raw in found:
            if len(read) >= READ_HINTS:
                read.clear()
            read[key] = True
            yield key.decode(), loads(raw)

    def __len__(self) -> int:
        return self._count

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.glob("*") if f.is_file())

    def close(self) -> None:
        self._read, self._read_before = {}, {}
        self._cache = {}
        self._cached = 0
        db, self._db = self._db, None
        if db is not None:
            self._index = self._index_cf = self._meta = self._meta_cf = None
            # RocksDB's shutdown flush: one atomic flush of every column family. rocksdict's
            # close() flushes the default family alone first (a manual flush, of the families
            # named only), which a crash right after would leave on disk ahead of its checkpoint;
            # after this it has nothing left to flush (and reports the shutdown: suppressed).
            with contextlib.suppress(Exception):
                db.cancel_all_background(True)
            with contextlib.suppress(Exception):
                db.close()

    def destroy(self) -> None:
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
