"""Metrics of scheduled nodes, read at scrape time from their ``tick`` steps
(:mod:`stream_orch.steps.tick`): when each last fired, and how many ticks it fired."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PREFIX = "stream_orch_"


class Ticking(Protocol):
    fired_total: int
    last_fired: int | None


class ScheduleCollector(Collector):
    def __init__(self) -> None:
        self.nodes: dict[str, Ticking] = {}

    def describe(self) -> Iterator[Metric]:
        yield from self._families({})

    def collect(self) -> Iterator[Metric]:
        yield from self._families(self.nodes)

    @staticmethod
    def _families(nodes: dict[str, Ticking]) -> Iterator[Metric]:
        last = GaugeMetricFamily(
            PREFIX + "schedule_last_tick_timestamp_seconds",
            "Unix time of the latest tick a scheduled node fired on this worker (as processed; "
            "under exactly_once it lands with its batch). Alert when it falls behind the schedule.",
            labels=["node"],
        )
        fired = CounterMetricFamily(
            PREFIX + "schedule_ticks_fired",
            "Ticks a scheduled node fired on this worker (catch-up ticks included).",
            labels=["node"],
        )
        for node, step in nodes.items():
            if step.last_fired is not None:
                last.add_metric([node], step.last_fired / 1000)
            fired.add_metric([node], step.fired_total)
        yield from (last, fired)
