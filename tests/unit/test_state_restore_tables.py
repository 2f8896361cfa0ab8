"""Restoring several tables' partitions with one reader (state/restore.py), against a reader
that serves changelogs from memory: each record lands in its own table's store, each store's
checkpoint ends at its changelog's end, only the tails past the checkpoints are read, and no
read at all happens when every checkpoint already equals its end."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition

from stream_orch.state.restore import restore_tables
from stream_orch.state.store import store_opener
from stream_orch.state.tables import LocalTable


@dataclass
class _Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class _Reader:
    """A group-less reader over in-memory logs: (topic, partition) -> records from ``begin``."""

    def __init__(self, logs: dict[TopicPartition, list[_Record]], begin: dict[TopicPartition, int]) -> None:
        self.logs = logs
        self.begin = begin
        self.assigned: list[TopicPartition] = []
        self.positions: dict[TopicPartition, int] = {}
        self.fetched: list[TopicPartition] = []  # every partition a fetch returned records of
        self.assignments: list[list[TopicPartition]] = []
        self.paused: set[TopicPartition] = set()

    def _end(self, tp: TopicPartition) -> int:
        records = self.logs.get(tp, [])
        return records[-1].offset + 1 if records else self.begin.get(tp, 0)

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.begin.get(tp, 0) for tp in tps}

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self._end(tp) for tp in tps}

    def assign(self, tps: list[TopicPartition]) -> None:
        self.assigned = list(tps)
        self.assignments.append(list(tps))

    def pause(self, *tps: TopicPartition) -> None:
        self.paused = set(tps)

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        for tp in tps:
            self.positions[tp] = self.begin.get(tp, 0)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        assert tp in self.assigned, f"{tp} sought while not assigned"  # aiokafka: IllegalStateError
        self.positions[tp] = offset

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    async def getmany(
        self, *tps: TopicPartition, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[_Record]]:
        out = {}
        for tp in tps:
            assert tp in self.assigned, f"{tp} fetched while not assigned"
            records = [r for r in self.logs.get(tp, []) if r.offset >= self.positions[tp]][:2]
            if records:
                out[tp] = records
                self.positions[tp] = records[-1].offset + 1
                self.fetched.append(tp)
        return out


def _log(topic: str, partition: int, rows: list[tuple[str, Any]], first: int = 0) -> list[_Record]:
    return [
        _Record(topic, partition, first + i, key.encode(), None if value is None else orjson.dumps(value))
        for i, (key, value) in enumerate(rows)
    ]


@pytest.fixture(params=["memory", "rocksdb"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def _tables(kind: str, root: Path) -> list[LocalTable]:
    return [
        LocalTable(name, f"{name}.changelog", store_opener(kind, root / name, root=root))
        for name in ("seen", "velocity")
    ]


async def test_each_tables_records_land_in_its_own_stores_with_their_checkpoints(
    kind: str, tmp_path: Path
) -> None:
    seen, velocity = _tables(kind, tmp_path)
    logs = {
        TopicPartition("seen.changelog", 0): _log("seen.changelog", 0, [("a", 1), ("b", 2), ("a", None)]),
        TopicPartition("seen.changelog", 1): _log("seen.changelog", 1, [("c", 3)]),
        TopicPartition("velocity.changelog", 0): _log("velocity.changelog", 0, [("a", 10)]),
        TopicPartition("velocity.changelog", 1): _log("velocity.changelog", 1, [("c", 30), ("d", 40)]),
    }
    progress: dict[str, list[tuple[int, int]]] = {}
    done = await restore_tables(
        _Reader(logs, {}),
        [seen, velocity],
        [0, 1],
        progress=lambda name: lambda n, left: progress.setdefault(name, []).append((n, left)),
    )
    assert dict(seen.items(0)) == {"b": 2} and dict(seen.items(1)) == {"c": 3}
    assert dict(velocity.items(0)) == {"a": 10} and dict(velocity.items(1)) == {"c": 30, "d": 40}
    assert (seen.checkpoint(0), seen.checkpoint(1)) == (3, 1)
    assert (velocity.checkpoint(0), velocity.checkpoint(1)) == (1, 2)
    assert done.read == {"seen": 4, "velocity": 3} and done.kept == {"seen": 0, "velocity": 0}
    assert sum(n for n, _ in progress["seen"]) == 4 and progress["seen"][-1][1] == 0
    assert sum(n for n, _ in progress["velocity"]) == 3 and progress["velocity"][-1][1] == 0
    seen.close()
    velocity.close()


async def test_no_read_when_every_checkpoint_equals_its_end(kind: str, tmp_path: Path) -> None:
    seen, velocity = _tables(kind, tmp_path)
    logs = {
        TopicPartition("seen.changelog", 0): _log("seen.changelog", 0, [("a", 1), ("b", 2)]),
        TopicPartition("velocity.changelog", 0): _log("velocity.changelog", 0, [("a", 10)]),
    }
    await restore_tables(_Reader(logs, {}), [seen, velocity], [0])
    seen.close()
    velocity.close()
    seen, velocity = _tables(kind, tmp_path)  # a restarted worker, its stores on disk (or not)
    reader = _Reader(logs, {})
    done = await restore_tables(reader, [seen, velocity], [0])
    if kind == "rocksdb":
        assert reader.assignments == [] and reader.fetched == [], "read although nothing was due"
        assert done.read == {"seen": 0, "velocity": 0} and done.kept == {"seen": 2, "velocity": 1}
    else:  # memory stores start empty: everything is read again
        assert done.read == {"seen": 2, "velocity": 1}
    assert dict(seen.items(0)) == {"a": 1, "b": 2} and dict(velocity.items(0)) == {"a": 10}
    assert (seen.checkpoint(0), velocity.checkpoint(0)) == (2, 1)
    seen.close()
    velocity.close()


async def test_only_the_tails_past_the_checkpoints_are_read(tmp_path: Path) -> None:
    seen, velocity = _tables("rocksdb", tmp_path)
    seen_tp, velocity_tp = TopicPartition("seen.changelog", 0), TopicPartition("velocity.changelog", 0)
    logs = {
        seen_tp: _log("seen.changelog", 0, [("a", 1)]),
        velocity_tp: _log("velocity.changelog", 0, [("v", 1)]),
    }
    await restore_tables(_Reader(logs, {}), [seen, velocity], [0])
    seen.close()
    velocity.close()
    logs[seen_tp] += _log("seen.changelog", 0, [("b", 2), ("c", 3)], first=1)  # written elsewhere since
    seen, velocity = _tables("rocksdb", tmp_path)
    reader = _Reader(logs, {})
    done = await restore_tables(reader, [seen, velocity], [0])
    assert reader.assignments == [[seen_tp]], "only the changelog with a tail is read"
    assert done.read == {"seen": 2, "velocity": 0} and done.kept == {"seen": 1, "velocity": 1}
    assert dict(seen.items(0)) == {"a": 1, "b": 2, "c": 3} and seen.checkpoint(0) == 3
    assert reader.paused == {seen_tp}, "what was read is paused after the read"
    seen.close()
    velocity.close()


async def test_a_checkpoint_outside_the_changelog_rebuilds_only_that_store(tmp_path: Path) -> None:
    seen, velocity = _tables("rocksdb", tmp_path)
    seen_tp, velocity_tp = TopicPartition("seen.changelog", 0), TopicPartition("velocity.changelog", 0)
    logs = {
        seen_tp: _log("seen.changelog", 0, [("a", 1), ("b", 2)]),
        velocity_tp: _log("velocity.changelog", 0, [("v", 1)]),
    }
    await restore_tables(_Reader(logs, {}), [seen, velocity], [0])
    seen.close()
    velocity.close()
    logs[seen_tp] = _log("seen.changelog", 0, [("z", 9)], first=5)  # truncated past the checkpoint
    seen, velocity = _tables("rocksdb", tmp_path)
    done = await restore_tables(_Reader(logs, {seen_tp: 5}), [seen, velocity], [0])
    assert dict(seen.items(0)) == {"z": 9} and seen.checkpoint(0) == 6
    assert dict(velocity.items(0)) == {"v": 1} and done.kept["velocity"] == 1
    seen.close()
    velocity.close()
