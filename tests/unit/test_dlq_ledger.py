"""The replay ledger without a broker: offsets as runs, chunk records, one bit per dead letter,
and ledgers written by earlier versions (one record per id, tombstones taking an id back)."""

from __future__ import annotations

import orjson

from stream_orch.reliability import ledger, replay


def test_offsets_become_runs() -> None:
    assert ledger.offset_ranges([3, 4, 5, 9, 11, 12]) == [[3, 5], [9, 9], [11, 12]]
    assert ledger.offset_ranges([]) == []


def test_chunk_records_split_by_runs_and_keys_name_dlq_partition_and_offsets(monkeypatch) -> None:
    monkeypatch.setattr(ledger, "LEDGER_RANGES", 2)
    entries = ledger.ledger_entries("t.dlq", 2, [1, 2, 5, 8, 9])
    assert [k for k, _ in entries] == [b"t.dlq/2/1-5", b"t.dlq/2/8-9"]
    value = orjson.loads(entries[0][1])
    assert (value["dlq"], value["partition"], value["ranges"]) == ("t.dlq", 2, [[1, 2], [5, 5]])


def test_replayed_is_a_bitmap_over_the_bounds() -> None:
    done = ledger.Replayed({0: (100, 1_100), 1: (0, 10)})
    done.add_range(0, 90, 104)  # below the log start: ignored
    done.add(1, 10)  # at the end offset: a dead letter this run cannot meet
    done.add(2, 0)  # a partition the DLQ does not have
    assert [o for o in range(90, 110) if (0, o) in done] == [100, 101, 102, 103, 104]
    assert (1, 10) not in done and (2, 0) not in done
    done.discard(0, 102)
    assert (0, 102) not in done and (0, 103) in done
    assert sum(len(b) for b in done._bits.values()) == 125 + 2  # one bit per dead letter


def test_ledger_records_of_this_and_earlier_versions() -> None:
    done = ledger.Replayed({0: (0, 100), 1: (0, 100)})
    for key, value in ledger.ledger_entries("t.dlq", 0, [1, 2, 3]) + ledger.ledger_entries("other", 0, [7]):
        ledger.apply_ledger_record("t.dlq", done, key, value)
    old = orjson.dumps({"to": "t", "partition": 0, "offset": 4, "at": 1})
    ledger.apply_ledger_record("t.dlq", done, b"t.dlq/1/50", old)  # one id per record (earlier versions)
    ledger.apply_ledger_record("t.dlq", done, b"t.dlq/1/51", old)
    ledger.apply_ledger_record("t.dlq", done, b"t.dlq/1/51", None)  # a tombstone takes an id back
    ledger.apply_ledger_record("t.dlq", done, b"garbage", b"not json")
    ledger.apply_ledger_record("t.dlq", done, None, old)
    assert {(p, o) for p in (0, 1) for o in range(100) if (p, o) in done} == {(0, 1), (0, 2), (0, 3), (1, 50)}


def test_a_chunk_of_scattered_offsets_stays_a_small_record() -> None:
    entries = ledger.ledger_entries("t.dlq", 0, list(range(0, 2 * replay.REPLAY_BATCH, 2)))
    assert max(len(v) for _, v in entries) < 100_000
