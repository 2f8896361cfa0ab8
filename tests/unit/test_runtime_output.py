"""Output logic without a broker: partitioning, the outbox by task, and producer renewal."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import murmur2

from stream_orch.runtime.delivery import AtLeastOnce
from stream_orch.runtime.output import Lane, Outbox, PartitionMap, Record, merged


class FakeProducer:
    """Stands in for AIOKafkaProducer where only start/stop matter."""

    def __init__(self, fail_start: bool = False) -> None:
        self.fail_start = fail_start
        self.started = self.stopped = False

    async def start(self) -> None:
        if self.fail_start:
            raise ConnectionError("Unable to bootstrap")
        self.started = True

    async def stop(self) -> None:
        self.stopped = True


def test_partition_map_is_kafkas_murmur2_and_round_robin_for_null_keys() -> None:
    pm = PartitionMap({"t": 6})
    assert pm.of("t", b"acct-1") == (murmur2(b"acct-1") & 0x7FFFFFFF) % 6
    assert {pm.of("t", None) for _ in range(6)} == set(range(6))


def test_the_outbox_groups_records_by_task_and_merges_them_for_one_producer() -> None:
    box = Outbox(PartitionMap({"out": 4, "dlq": 1}))
    box.add(0, "out", b"k", b"a", partition=1)
    box.add(1, "out", b"k", b"b", partition=1)
    box.add(1, "dlq", None, b"c")
    by_task = box.take()
    assert sorted(by_task) == [0, 1]
    assert [r[1] for r in by_task[1][("out", 1)]] == [b"b"]
    assert box.take() == {}, "take empties the outbox"
    flat = merged(by_task)
    assert [r[1] for r in flat[("out", 1)]] == [b"a", b"b"], "task order kept within a partition"
    assert [r[1] for r in flat[("dlq", 0)]] == [b"c"]


class _Events:
    def flushed(self, seconds: float) -> None: ...

    def committed(self, offsets: object, seconds: float) -> None: ...

    def delivered(self, out: object) -> None: ...


def _delivery(factory) -> AtLeastOnce:  # type: ignore[no-untyped-def]
    async def commit(offsets: object) -> None: ...

    return AtLeastOnce(factory, commit, _Events(), "n")


async def test_renew_swaps_in_a_new_producer_and_stops_the_one_before() -> None:
    made: list[FakeProducer] = []

    def factory() -> FakeProducer:
        made.append(FakeProducer())
        return made[-1]

    delivery = _delivery(factory)
    await delivery.assign({0})
    await delivery.renew()
    assert delivery._producer is made[1] and made[1].started
    assert made[0].stopped, "the replaced producer is stopped"


async def test_a_renewal_that_cannot_start_is_stopped_and_leaves_the_old_producer() -> None:
    """While the broker is away the new producer cannot bootstrap: it must not leak (an
    unclosed producer) nor replace the old one, and the caller can simply renew again."""
    old, refused, fine = FakeProducer(), FakeProducer(fail_start=True), FakeProducer()
    attempts = [old, refused, fine]
    delivery = _delivery(lambda: attempts.pop(0))
    await delivery.assign({0})
    with pytest.raises(ConnectionError):
        await delivery.renew()
    assert refused.stopped
    assert delivery._producer is old
    await delivery.renew()
    assert delivery._producer is fine and fine.started and old.stopped


def test_our_murmur2_is_kafkas_for_every_key_length() -> None:
    from aiokafka.partitioner import murmur2 as reference

    from stream_orch.runtime.output import murmur2 as ours

    keys = [bytes(range(n)) for n in range(40)] + [b"\xff" * n for n in range(1, 12)]
    keys += [f"A-{n:07d}".encode() for n in range(0, 5000, 7)] + ["é-ü".encode()]
    for key in keys:
        assert ours(key) == reference(key), key


def test_a_full_partition_cache_forgets_its_older_half_and_stays_right(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(PartitionMap, "_CACHE_LIMIT", 10)
    pm = PartitionMap({"t": 7})
    keys = [f"k{n}".encode() for n in range(25)]
    for key in keys:
        assert pm.of("t", key) == (murmur2(key) & 0x7FFFFFFF) % 7
    cached = pm._caches["t"]
    assert len(cached) <= 10 and keys[-1] in cached and keys[0] not in cached
    pm.set_count("t", 3)
    assert all(pm.of("t", key) == (murmur2(key) & 0x7FFFFFFF) % 3 for key in keys), "no stale partitions"


def _lane_add(lane: Lane, task: int, records: list[Record]) -> None:
    """What the router does per record with a lane (Lane's docstring)."""
    for record in records:
        if lane.task != task:
            lane.switch(task)
        partition = lane.cache.get(record[0])  # type: ignore[arg-type]
        if partition is None:
            partition = lane.partition(record[0])
        same = lane.lists.get(partition)
        if same is None:
            same = lane.open(partition)
        same.append(record)


def test_records_of_one_key_go_to_its_partition_whichever_way_they_are_added() -> None:
    pm = PartitionMap({"out": 5})
    box = Outbox(pm)
    lane = Lane("out")
    lane.begin(box)
    box.add(2, "out", b"acct-9", b"v1", [("h", b"1")], timestamp_ms=7)
    _lane_add(lane, 2, [(b"acct-9", b"v2", 8, []), (b"other", b"o", 8, [])])
    box.add(2, "out", b"acct-9", b"v3", partition=pm.of("out", b"acct-9"))
    _lane_add(lane, 3, [(b"acct-9", b"v4", None, [])])
    _lane_add(lane, 2, [(b"acct-9", b"v5", 9, [])])
    by_task = box.take()
    p, q = pm.of("out", b"acct-9"), pm.of("out", b"other")
    assert p != q
    assert by_task[2][("out", p)] == [
        (b"acct-9", b"v1", 7, [("h", b"1")]),
        (b"acct-9", b"v2", 8, []),
        (b"acct-9", b"v3", None, []),
        (b"acct-9", b"v5", 9, []),
    ]
    assert by_task[2][("out", q)] == [(b"other", b"o", 8, [])]
    assert by_task[3] == {("out", p): [(b"acct-9", b"v4", None, [])]}


def test_a_lane_starts_each_batch_on_the_outbox_as_it_is_now() -> None:
    box = Outbox(PartitionMap({"out": 2}))
    lane = Lane("out")
    lane.begin(box)
    _lane_add(lane, 0, [(b"k", b"1", None, [])])
    first = box.take()
    lane.begin(box)
    _lane_add(lane, 0, [(b"k", b"2", None, [])])
    assert [v for pending in first.values() for rs in pending.values() for _, v, _, _ in rs] == [b"1"]
    assert [v for pending in box.take().values() for rs in pending.values() for _, v, _, _ in rs] == [b"2"]


def test_records_without_a_key_are_spread_round_robin_in_order() -> None:
    box = Outbox(PartitionMap({"out": 3}))
    lane = Lane("out")
    lane.begin(box)
    _lane_add(lane, 0, [(None, str(n).encode(), None, []) for n in range(6)])
    pending = box.take()[0]
    assert sorted(len(records) for records in pending.values()) == [2, 2, 2]
    assert [v for records in pending.values() for _, v, _, _ in records] == [
        b"0",
        b"3",
        b"1",
        b"4",
        b"2",
        b"5",
    ]
