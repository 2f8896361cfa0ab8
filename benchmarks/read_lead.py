"""Which side of a join a contender read ahead, and by how much, seen from outside (issue 25).

A join contender reads payments and settlements; which of the two it reads ahead decides where
the join's work goes (README, "the two modes are the read order"). The harness wrote both topics
itself, so it knows the event time of every offset: every ``INTERVAL_S`` during a round it reads
the contender's committed offsets (any group named ``<prefix>`` or ``<prefix>.*``) and takes, per
partition, the event time of the last committed payment minus that of the last committed
settlement. Only partitions where both sides are between their first and last record count (a
side read to its end lets the other go ahead, rightly). Engine-agnostic: it works for the base
tree of an A/B and for the other contenders alike, at the granularity of their commits (ours per
batch; Kafka Streams' at_least_once every 30 s, so its figure is coarse).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
from collections.abc import Sequence
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from benchmarks.data import partition_for

INTERVAL_S = 0.5


def times_by_partition(items: Sequence[tuple[bytes, bytes, int]], partitions: int) -> list[list[int]]:
    """Per partition, the event time of each offset (records written in order, from offset 0,
    by the key's partition: as ``data.produce_raw`` writes them)."""
    out: list[list[int]] = [[] for _ in range(partitions)]
    for key, _value, ts in items:
        out[partition_for(key, partitions)].append(ts)
    return out


class LeadSampler:
    """Samples the lead of ``input`` over ``settlements`` (topics, with their offsets' times)."""

    def __init__(
        self,
        bootstrap: str,
        group_prefix: str,
        topics: dict[str, str],
        times: dict[str, list[list[int]]],
    ) -> None:
        self._bootstrap = bootstrap
        self._prefix = group_prefix
        self._topics = topics  # role (input, settlements) -> topic
        self._times = times  # role -> per partition, event time by offset
        self.leads_ms: list[int] = []  # every sample of every partition, input minus settlements

    async def run(self) -> None:
        """Sample until cancelled."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap)
        await admin.start()
        try:
            group = None
            while True:
                await asyncio.sleep(INTERVAL_S)
                with contextlib.suppress(Exception):  # the group is forming, or a request timed out
                    if group is None:
                        names = [str(g[0]) for g in await admin.list_consumer_groups()]
                        mine = [n for n in names if n == self._prefix or n.startswith(self._prefix + ".")]
                        group = mine[0] if mine else None
                    if group is not None:
                        self._sample(await admin.list_consumer_group_offsets(group))
        finally:
            await admin.close()

    def _sample(self, committed: dict[TopicPartition, Any]) -> None:
        pay, settle = self._topics["input"], self._topics["settlements"]
        for p, pay_times in enumerate(self._times["input"]):
            settle_times = self._times["settlements"][p]
            a = committed.get(TopicPartition(pay, p))
            b = committed.get(TopicPartition(settle, p))
            if a is None or b is None:
                continue
            a, b = a.offset, b.offset
            if 0 < a < len(pay_times) and 0 < b < len(settle_times):
                self.leads_ms.append(pay_times[a - 1] - settle_times[b - 1])

    def summary(self) -> dict[str, Any]:
        """Which side led (its median over the samples) and by how much, in seconds."""
        leads = self.leads_ms
        if not leads:
            return {"samples": 0}
        median = statistics.median(leads) / 1000
        absolute = sorted(abs(x) for x in leads)
        return {
            "samples": len(leads),
            "led": "payments" if median > 0 else "settlements" if median < 0 else "neither",
            "median_s": round(median, 1),
            "p90_abs_s": round(absolute[int(0.9 * (len(absolute) - 1))] / 1000, 1),
            "max_abs_s": round(absolute[-1] / 1000, 1),
            "payments_ahead_share": round(sum(x > 0 for x in leads) / len(leads), 3),
        }
