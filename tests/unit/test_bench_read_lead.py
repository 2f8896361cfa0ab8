"""The benchmark's read-order figure (benchmarks/read_lead.py): from the committed offsets and the
event time of every offset the harness wrote, which side a join contender read ahead and by how
much; partitions where a side is at its start or end do not count."""

from __future__ import annotations

from types import SimpleNamespace

from aiokafka import TopicPartition

from benchmarks.data import partition_for
from benchmarks.read_lead import LeadSampler, times_by_partition


def test_times_follow_the_partition_each_key_is_written_to() -> None:
    items = [(f"k{i}".encode(), b"", 1000 + i) for i in range(20)]
    times = times_by_partition(items, 3)
    for p in range(3):
        assert times[p] == [ts for key, _, ts in items if partition_for(key, 3) == p]


def test_the_side_read_ahead_and_by_how_much() -> None:
    times = {"input": [[0, 60_000, 120_000, 180_000]], "settlements": [[0, 1_000, 2_000, 3_000]]}
    sampler = LeadSampler("-", "g", {"input": "pay", "settlements": "set"}, times)

    def committed(a: int, b: int) -> dict[TopicPartition, SimpleNamespace]:
        return {
            TopicPartition("pay", 0): SimpleNamespace(offset=a),
            TopicPartition("set", 0): SimpleNamespace(offset=b),
        }

    sampler._sample(committed(3, 2))  # payments at 120 s, settlements at 1 s
    sampler._sample(committed(2, 3))  # 60 s against 2 s
    sampler._sample(committed(4, 2))  # payments read to their end: not counted
    sampler._sample(committed(0, 2))  # payments not started: not counted
    summary = sampler.summary()
    assert summary["samples"] == 2
    assert summary["led"] == "payments"
    assert summary["median_s"] == 88.5
    assert summary["max_abs_s"] == 119.0
    assert summary["payments_ahead_share"] == 1.0
    assert LeadSampler("-", "g", {}, {}).summary() == {"samples": 0}
