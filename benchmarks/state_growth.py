"""CPU per event as a fraud worker's RocksDB stores grow (issue 25: 0.036 -> 0.048 s/1k events
from a 100k- to a 1M-record run).

    python benchmarks/state_growth.py --events 1000000 [--stats] [--tweak none,...] [--json out]

Twelve stores as one fraud worker has them (six partitions x ``seen_txns`` and
``account_velocity``), opened by ``store_opener`` and driven by the real ``dedupe`` and
``aggregate`` steps through ``LocalTable`` in batches of 2,000 events (seal, land with a
checkpoint, as a node does), with the records of ``benchmarks.data``: a fresh random
``txn_id`` per event (nearly every dedupe read is of an absent key, then an id and a time-index
entry written), ``account_id`` over ``events / 40`` accounts, event time spread over an hour. No
Kafka, no pruning (the 24 h horizon prunes nothing in an hour of event time).

Per slice of 100k events: process CPU (user+sys: RocksDB's flush and compaction threads
included), the main thread's CPU, and the wall time spent in ``RocksStore.get`` and
``RocksStore.write``, all per 1k events; RocksDB's own figures summed over the stores' column
families (files per level, pending compaction bytes) and, with ``--stats``, the statistics
tickers' deltas (block cache and filter hits, bytes flushed and compacted, their CPU).

``--split`` times RocksDB's own ``db.write`` apart from the rest of ``RocksStore.write``, per
table: calls, keys per call (the count and checkpoint puts included), WriteBatch bytes per key and
microseconds per key in ``db.write`` (a proxy around each store's database: a little slower).

``--tweak`` applies named option changes on top of ``stream_orch.state.rocks._options`` (for
experiments); to compare two versions of the store code, run this file with ``PYTHONPATH``
pointing at the other checkout (it imports ``stream_orch`` only), alternating runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

BATCH = 2000
PARTITIONS = 6
SLICE = 100_000
LEVELS = 7
TICKERS = (
    "rocksdb.block.cache.filter.hit",
    "rocksdb.block.cache.filter.miss",
    "rocksdb.block.cache.index.hit",
    "rocksdb.block.cache.index.miss",
    "rocksdb.block.cache.data.hit",
    "rocksdb.block.cache.data.miss",
    "rocksdb.bloom.filter.useful",
    "rocksdb.memtable.hit",
    "rocksdb.memtable.miss",
    "rocksdb.l0.hit",
    "rocksdb.l1.hit",
    "rocksdb.l2andup.hit",
    "rocksdb.flush.write.bytes",
    "rocksdb.compact.read.bytes",
    "rocksdb.compact.write.bytes",
    "rocksdb.wal.bytes",
    "rocksdb.bytes.written",
    "rocksdb.number.keys.read",
    "rocksdb.stall.micros",
)
# histograms whose SUM is a time: flush and compaction CPU as RocksDB counts it
SUMS = ("rocksdb.compaction.times.cpu_micros", "rocksdb.compaction.times.micros", "rocksdb.db.flush.micros")


def _tickers(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if name in TICKERS and "COUNT :" in rest:
            out[name] = int(rest.split("COUNT :")[1])
        elif name in SUMS and "SUM :" in rest:
            out[name + ".sum"] = int(rest.split("SUM :")[1].split()[0])
    return out


def _tweak(opts: Any, names: list[str]) -> None:
    from rocksdict import BlockBasedOptions, DBCompressionType

    for name in names:
        if name == "nocompress":
            opts.set_compression_type(DBCompressionType.none())
        elif name == "lz4":
            opts.set_compression_type(DBCompressionType.lz4())
        elif name.startswith("l0_"):  # L0 files that trigger a compaction (RocksDB's default: 4)
            opts.set_level_zero_file_num_compaction_trigger(int(name[3:]))
        elif name.startswith("mtbloom"):  # a whole-key bloom filter in each memtable, mtbloom<%>
            opts.set_memtable_prefix_bloom_ratio(float(name[7:] or 10) / 100)
            opts.set_memtable_whole_key_filtering(True)
        elif name.startswith("mt") and name[2:].isdigit():  # memtable MB
            opts.set_write_buffer_size(int(name[2:]) << 20)
        elif name == "fullfilter":  # one filter block per SST file, not partitioned
            from stream_orch.state import rocks

            table = BlockBasedOptions()
            table.set_bloom_filter(10, False)
            table.set_block_cache(rocks._block_cache())
            table.set_cache_index_and_filter_blocks(True)
            table.set_pin_l0_filter_and_index_blocks_in_cache(True)
            opts.set_block_based_table_factory(table)
        elif name == "nodyn":
            opts.set_level_compaction_dynamic_level_bytes(False)
        elif name == "bg1":
            opts.set_max_background_jobs(1)
        elif name:
            raise SystemExit(f"unknown tweak {name!r}")


class _TimedDb:
    """A store's database with ``write`` timed into ``spent`` ([calls, keys, bytes, seconds])."""

    def __init__(self, db: Any, spent: list[float]) -> None:
        self._db, self._spent = db, spent
        self.get, self.key_may_exist = db.get, db.key_may_exist  # the hot calls, unwrapped

    def write(self, batch: Any, *args: Any) -> None:
        spent = self._spent
        spent[0] += 1
        spent[1] += len(batch)
        spent[2] += batch.size_in_bytes()
        t = time.perf_counter()
        try:
            self._db.write(batch, *args)
        finally:
            spent[3] += time.perf_counter() - t

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


async def run(
    events: int, folder: Path, stats: bool, tweaks: list[str], split: bool = False
) -> dict[str, Any]:
    from benchmarks.data import make_customers, make_transaction
    from stream_orch.state import rocks
    from stream_orch.state.store import store_opener
    from stream_orch.state.tables import LocalTable
    from stream_orch.steps.aggregate import AggregateStepImpl
    from stream_orch.steps.base import Event
    from stream_orch.steps.dedupe import DedupeStepImpl

    made: list[Any] = []
    plain = rocks._options

    def options(*args: Any, **kwargs: Any) -> Any:
        opts = plain(*args, **kwargs)
        _tweak(opts, tweaks)
        if stats:
            opts.enable_statistics()
        made.append(opts)
        return opts

    rocks._options = options  # type: ignore[assignment]
    spent = {"get": 0.0, "write": 0.0}
    get, write = rocks.RocksStore.get, rocks.RocksStore.write
    clock = time.perf_counter

    def timed_get(self: Any, key: str, default: Any = None) -> Any:
        t = clock()
        try:
            return get(self, key, default)
        finally:
            spent["get"] += clock() - t

    def timed_write(self: Any, *args: Any, **kwargs: Any) -> None:
        t = clock()
        try:
            write(self, *args, **kwargs)
        finally:
            spent["write"] += clock() - t

    rocks.RocksStore.get = timed_get  # type: ignore[method-assign]
    rocks.RocksStore.write = timed_write  # type: ignore[method-assign]

    class Ctx:
        def __init__(self, tables: dict[str, LocalTable]) -> None:
            self._tables = tables

        def table(self, name: str) -> LocalTable:
            return self._tables[name]

        def reject(self, *args: Any) -> None:
            raise AssertionError(args)

        def drop(self, *args: Any) -> None:
            pass

    db_write: dict[str, list[float]] = {}  # table -> [calls, keys, bytes, seconds] in db.write
    try:
        tables = {}
        for name in ("seen_txns", "account_velocity"):
            opener = store_opener("rocksdb", folder / name, root=folder)
            table = tables[name] = LocalTable(name, f"{name}.changelog", opener)
            for p in range(PARTITIONS):
                store = table.open(p)
                if split:
                    store._db = _TimedDb(store._db, db_write.setdefault(name, [0, 0, 0, 0.0]))
        dedupe = DedupeStepImpl(field="txn_id", table="seen_txns", horizon_ms=86_400_000)
        aggregate = AggregateStepImpl(table="account_velocity", key="account_id", window_ms=60_000, as_="v")
        ctx = Ctx(tables)
        rng = random.Random(42)
        profiles = make_customers(max(100, events // 40), 42)
        start_ms = 1_700_000_000_000
        step_ms = 3_600_000 / events
        proc = psutil.Process()
        offsets = dict.fromkeys(tables, 0)
        samples: list[dict[str, Any]] = []

        def cpu() -> float:
            t = proc.cpu_times()
            return t.user + t.system

        def rocks_figures() -> dict[str, Any]:
            files = [0] * LEVELS
            by_cf: dict[str, list[int]] = {}
            pending = 0
            for name, table in tables.items():
                for store in table._stores.values():
                    for cf, db in (
                        ("default", getattr(store._db, "_db", store._db)),
                        ("index", store._index),
                    ):
                        mine = by_cf.setdefault(f"{name}/{cf}", [0] * LEVELS)
                        for level in range(LEVELS):
                            n = db.property_int_value(f"rocksdb.num-files-at-level{level}") or 0
                            files[level] += n
                            mine[level] += n
                        pending += db.property_int_value("rocksdb.estimate-pending-compaction-bytes") or 0
            figures: dict[str, Any] = {
                "files_per_level": files,
                "files_by_cf": {k: v for k, v in by_cf.items() if any(v)},
                "pending_compaction_mb": round(pending / 2**20, 1),
            }
            if stats:
                total: dict[str, int] = {}
                for opts in made:
                    for k, v in _tickers(opts.get_statistics() or "").items():
                        total[k] = total.get(k, 0) + v
                figures["tickers"] = total
            return figures

        last = rocks_figures()
        slice_t = {"cpu": cpu(), "main": time.thread_time(), "wall": clock(), "gen": 0.0}
        spent_at = dict(spent)
        db_write_at = {name: list(v) for name, v in db_write.items()}
        for first in range(0, events, BATCH):
            g0 = time.thread_time()
            batch = []
            for seq in range(first, min(events, first + BATCH)):
                record = make_transaction(rng, seq, profiles, int(start_ms + seq * step_ms), variants=False)
                p, offset = seq % PARTITIONS, seq // PARTITIONS
                batch.append(Event(record, partition=p, offset=offset, topic="in", source_offset=seq))
            slice_t["gen"] += time.thread_time() - g0
            out = await dedupe.run(batch, ctx)
            out = await aggregate.run(out, ctx)
            dedupe.release([])
            aggregate.release([])
            for name, table in tables.items():
                sealed = table.seal()
                offsets[name] += sum(len(w) for w in sealed.overlay.values())
                sealed.land({(table.changelog, p): offsets[name] - 1 for p in range(PARTITIONS)})
            done = first + len(batch)
            if done % SLICE == 0 or done == events:
                n = done - (samples[-1]["events"] if samples else 0)
                now = {"cpu": cpu(), "main": time.thread_time(), "wall": clock()}
                figures = rocks_figures()
                per_k = 1000 / n
                gen = slice_t["gen"]
                sample: dict[str, Any] = {
                    "events": done,
                    # the records' making (main thread) left out
                    "cpu_ms_per_1k": round((now["cpu"] - slice_t["cpu"] - gen) * 1e3 * per_k, 2),
                    "main_ms_per_1k": round((now["main"] - slice_t["main"] - gen) * 1e3 * per_k, 2),
                    "get_ms_per_1k": round((spent["get"] - spent_at["get"]) * 1e3 * per_k, 2),
                    "write_ms_per_1k": round((spent["write"] - spent_at["write"]) * 1e3 * per_k, 2),
                    "wall_ms_per_1k": round((now["wall"] - slice_t["wall"]) * 1e3 * per_k, 2),
                    "files_per_level": figures["files_per_level"],
                    "files_by_cf": figures["files_by_cf"],
                    "pending_compaction_mb": figures["pending_compaction_mb"],
                    "load_1m": round(os.getloadavg()[0], 2),
                }
                if split:
                    sample["db_write"] = {}
                    for name, now_w in db_write.items():
                        calls, keys, size, secs = (
                            a - b for a, b in zip(now_w, db_write_at[name], strict=True)
                        )
                        sample["db_write"][name] = {
                            "calls": int(calls),
                            "keys_per_call": round(keys / max(calls, 1), 1),
                            "bytes_per_key": round(size / max(keys, 1), 1),
                            "us_per_key": round(secs * 1e6 / max(keys, 1), 3),
                        }
                    db_write_at = {name: list(v) for name, v in db_write.items()}
                if stats:
                    before = last.get("tickers", {})
                    sample["tickers"] = {k: v - before.get(k, 0) for k, v in figures["tickers"].items()}
                samples.append(sample)
                print(json.dumps(sample), flush=True)
                last = figures
                slice_t = {**now, "gen": 0.0}
                spent_at = dict(spent)
        for table in tables.values():
            for store in table._stores.values():
                store._db = getattr(store._db, "_db", store._db)
                store.close()
        return {"events": events, "tweaks": tweaks, "stats": stats, "split": split, "samples": samples}
    finally:  # the module as it was (a unit test runs this inside pytest)
        rocks._options = plain  # type: ignore[assignment]
        rocks.RocksStore.get, rocks.RocksStore.write = get, write  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--stats", action="store_true", help="RocksDB statistics (costs a little CPU)")
    parser.add_argument("--split", action="store_true", help="db.write timed apart, per table")
    tweaks = "comma-separated: nocompress, lz4, l0_<n>, mtbloom<%%>, mt<MB>, fullfilter, nodyn, bg1"
    parser.add_argument("--tweak", default="", help=tweaks)
    parser.add_argument("--folder", type=Path, default=None, help="parent of the stores (a temporary one)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="state-growth-", dir=args.folder))
    try:
        result = asyncio.run(
            run(args.events, folder, args.stats, [t for t in args.tweak.split(",") if t], args.split)
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.path.append(str(Path(__file__).resolve().parent.parent))  # benchmarks.data (after PYTHONPATH)
    sys.exit(main())
