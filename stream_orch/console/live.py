"""The live figures of one or more topologies: one poll of the workers and the broker.

Lag comes from :class:`~stream_orch.observability.lag.LagCollector` (what ``stream-orch lag``
runs), rates from the difference of workers' counters between two polls. The console keeps no
state of its own beyond the previous poll.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from stream_orch.console.scrape import WorkerReading, by_label, scrape, total
from stream_orch.observability.lag import LagCollector, LagReader
from stream_orch.observability.status import StatusEvaluator
from stream_orch.redact import redact_urls
from stream_orch.runtime.inspect import PiiMask
from stream_orch.settings import Settings
from stream_orch.topology.graph import FlowGraph, build_graph, dlq_topic, retry_topics
from stream_orch.topology.models import TopologySpec
from stream_orch.topology.naming import group_id


@dataclass
class Topo:
    """A topology the console shows; ``mask``: its PII rules for the records the DLQ page shows
    (default: the fields its mask steps name; the CLI and the worker add its schemas' PII)."""

    spec: TopologySpec
    mask: PiiMask | None = None
    graph: FlowGraph = field(init=False)

    def __post_init__(self) -> None:
        self.graph = build_graph(self.spec)
        if self.mask is None:
            self.mask = PiiMask.of(self.spec)


class Live:
    """Polls workers and the broker; :meth:`figures` is what the page's JSON endpoint returns."""

    def __init__(
        self,
        topologies: dict[str, Topo],
        settings: Settings,
        workers: list[str],
        evaluator: StatusEvaluator | None = None,
    ) -> None:
        """``evaluator``: the status rule's window and ``min_stop_seconds`` (``stream-orch lag``'s
        defaults); kept across broker outages, so a reconnect does not forget the windows."""
        self.topologies = topologies
        self.evaluator = evaluator or StatusEvaluator()
        self.settings = settings
        self.workers = workers
        self._reader: LagReader | None = None
        self._collector: LagCollector | None = None
        self._prev: dict[str, WorkerReading] = {}
        self.readings: dict[str, WorkerReading] = {}
        self.broker_error: str | None = None
        self.lag_rows: list[Any] = []
        self._lock = asyncio.Lock()
        # one session for every poll: its connections to the workers are kept alive between
        # polls (a new connection per poll costs the worker an accept and a handshake each time)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._reader is not None:
            await self._reader.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _lag(self) -> None:
        groups = [group_id(t.spec.topology, n) for t in self.topologies.values() for n in t.spec.nodes]
        try:
            if self._reader is None:
                reader = LagReader(self.settings)
                await reader.start()
                self._reader = reader
                self._collector = LagCollector(reader, groups=groups, evaluator=self.evaluator)
            assert self._collector is not None
            known = set(await self._reader.groups())
            self._collector.groups = [g for g in groups if g in known] or None
            self.lag_rows = await self._collector.poll_once() if self._collector.groups else []
            self.broker_error = None
        except Exception:  # UserError (unreachable) or a Kafka error: the page shows a banner
            if self._reader is not None:
                await self._reader.stop()
            self._reader = self._collector = None
            self.broker_error = f"broker unreachable at {redact_urls(self.settings.bootstrap_servers)}"

    async def poll(self) -> None:
        async with self._lock:
            now = time.time()
            if self._session is None:
                self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3))
            readings = await asyncio.gather(*(scrape(self._session, u, now) for u in self.workers))
            self._prev, self.readings = self.readings, {r.url: r for r in readings}
            await self._lag()

    def _rate(self, name: str, **match: str) -> float | None:
        """records/s summed over workers readable now and at the previous poll."""
        rate, seen = 0.0, False
        for url, cur in self.readings.items():
            prev = self._prev.get(url)
            if cur.error or prev is None or prev.error or cur.at <= prev.at:
                continue
            delta = total(cur.samples, name, **match) - total(prev.samples, name, **match)
            rate += max(0.0, delta) / (cur.at - prev.at)
            seen = True
        return rate if seen else None

    def sum_of(self, name: str, label: str | None = None, **match: str) -> Any:
        if label is None:
            return sum(total(r.samples, name, **match) for r in self.readings.values() if not r.error)
        out: dict[str, float] = {}
        for r in self.readings.values():
            if not r.error:
                for k, v in by_label(r.samples, name, label, **match).items():
                    out[k] = out.get(k, 0.0) + v
        return out

    def _node_state(self, node: str) -> str | None:
        """A problem with the workers that run ``node``: down / metrics unreadable / None."""
        runs = [
            r
            for r in self.readings.values()
            if not r.error and by_label(r.samples, "events_in_total", "node").get(node) is not None
        ]
        if runs:
            return None
        errors = sorted({r.error for r in self.readings.values() if r.error})
        return errors[0] if errors else None

    def figures(self, name: str) -> dict[str, Any]:
        topo = self.topologies[name]
        spec, graph = topo.spec, topo.graph
        nodes: dict[str, Any] = {}
        for node_name, node in spec.nodes.items():
            group = group_id(spec.topology, node_name)
            rows = [r for r in self.lag_rows if r.group == group]
            statuses = [r.status for r in rows if r.status is not None]
            seconds = [r.lag_seconds for r in rows if not math.isnan(r.lag_seconds)]
            nodes[node_name] = {
                "lag_records": sum(r.lag_records for r in rows) if rows else None,
                "lag_seconds": max(seconds) if seconds else None,
                "status": max(statuses).name if statuses else None,
                "worker": self._node_state(node_name),
                "restarts": self.sum_of("node_restarts_total", node=node_name),
                "dlq_by_reason": self.sum_of("dead_lettered_total", "reason", node=node_name),
                "dlq_topic": dlq_topic(node),
                "retry_tiers": {t: self._lag_of_topic(t) for t in retry_topics(node)},
                "errors": self.sum_of("errors_total", "error_class", node=node_name),
            }
        edges: dict[str, float | None] = {}
        for i, e in enumerate(graph.edges):
            node = e.dst.partition(":")[2] if e.dst.startswith("node:") else None
            if e.kind == "input" and node:
                edges[f"e{i}"] = self._rate("events_in_total", node=node)
            elif e.kind == "route" and e.src.startswith("node:") and e.dst.startswith("topic:"):
                edges[f"e{i}"] = self._rate(
                    "events_out_total", node=e.src.partition(":")[2], topic=e.dst.partition(":")[2]
                )
            elif e.kind == "dlq":
                edges[f"e{i}"] = self._rate("dead_lettered_total", node=e.src.partition(":")[2])
        return {
            "topology": spec.topology,
            "version": spec.version,
            "processing": spec.processing,
            "broker_error": self.broker_error,
            "workers": {u: (r.error or "ok") for u, r in self.readings.items()},
            "nodes": nodes,
            "edges": edges,
            "tables": self.sum_of("table_entries", "table"),
        }

    def _lag_of_topic(self, topic: str) -> int:
        return sum(r.lag_records for r in self.lag_rows if r.topic == topic)
