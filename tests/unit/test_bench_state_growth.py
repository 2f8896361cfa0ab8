"""benchmarks/state_growth.py on a few thousand events: the twelve stores are driven by the real
steps and the slice's figures come out (RocksDB's included), and the store module is left as it
was (the script wraps its options and its reads and writes while it runs)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from benchmarks import state_growth
from stream_orch.state import rocks


def test_a_short_run_reports_its_slice_and_restores_the_store_module(tmp_path: Path) -> None:
    options, get, write = rocks._options, rocks.RocksStore.get, rocks.RocksStore.write
    result = asyncio.run(state_growth.run(4000, tmp_path, True, ["nocompress"]))
    (sample,) = result["samples"]
    assert sample["events"] == 4000
    assert sample["cpu_ms_per_1k"] > 0 and sample["get_ms_per_1k"] > 0 and sample["write_ms_per_1k"] > 0
    assert len(sample["files_per_level"]) == state_growth.LEVELS
    assert sample["tickers"]["rocksdb.bytes.written"] > 0
    assert (rocks._options, rocks.RocksStore.get, rocks.RocksStore.write) == (options, get, write)


def test_split_times_db_write_per_table_and_counts_every_key(tmp_path: Path) -> None:
    result = asyncio.run(state_growth.run(4000, tmp_path, False, [], split=True))
    (sample,) = result["samples"]
    seen, velocity = sample["db_write"]["seen_txns"], sample["db_write"]["account_velocity"]
    # two batches of 2,000 events, each landing once per partition of each table
    assert seen["calls"] == velocity["calls"] == 2 * state_growth.PARTITIONS
    # every event is new: its id and its time-index entry, plus the count and checkpoint per call
    assert abs(seen["keys_per_call"] - (4000 * 2 / seen["calls"] + 2)) < 0.1
    assert seen["us_per_key"] > 0 and seen["bytes_per_key"] > 0 and velocity["us_per_key"] > 0
