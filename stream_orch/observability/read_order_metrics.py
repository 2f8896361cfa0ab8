"""Metrics of the nodes that read a join's two inputs in event-time order
(:mod:`stream_orch.runtime.readorder`), read at scrape time: how far one side's newest record
read is ahead of the other's, the largest such lead of each side so far, and how long each
topic's partitions had records held back. Labels are node, topic and partition: never a record's
value."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PREFIX = "stream_orch_"


class Ordered(Protocol):
    input: str
    held_s: dict[str, float]
    lead_max_s: dict[str, float]

    def leads(self) -> dict[tuple[str, int], float]: ...


class ReadOrderCollector(Collector):
    def __init__(self) -> None:
        self.nodes: dict[str, Ordered] = {}

    def describe(self) -> Iterator[Metric]:
        yield from self._families({})

    def collect(self) -> Iterator[Metric]:
        yield from self._families(self.nodes)

    @staticmethod
    def _families(nodes: dict[str, Ordered]) -> Iterator[Metric]:
        lead = GaugeMetricFamily(
            PREFIX + "join_read_lead_seconds",
            "Event time of the newest record read of a join node's input partition minus that of "
            "the joined topic's partition (negative: the joined topic is ahead); held within "
            "join_read_lead_ms while the side behind has records on the broker.",
            labels=["node", "topic", "partition"],
        )
        lead_max = GaugeMetricFamily(
            PREFIX + "join_read_lead_max_seconds",
            "The largest event-time lead by which a side of a join node (topic: the input or the "
            "joined topic) was read ahead of the other, on any partition, since the worker started.",
            labels=["node", "topic"],
        )
        held = CounterMetricFamily(
            PREFIX + "join_read_held_seconds",
            "Seconds a join node's partitions of topic had records held back, waiting for the other "
            "side to catch up (summed over partitions).",
            labels=["node", "topic"],
        )
        for node, order in nodes.items():
            for (topic, partition), seconds in sorted(order.leads().items()):
                lead.add_metric([node, topic, str(partition)], seconds)
            for topic, seconds in sorted(order.lead_max_s.items()):
                lead_max.add_metric([node, topic], seconds)
            for topic, seconds in sorted(order.held_s.items()):
                held.add_metric([node, topic], seconds)
        yield from (lead, lead_max, held)
