"""One node's record path, without Kafka: decode, run the steps, route, retry or dead-letter.

:class:`~stream_orch.runtime.node.NodeRunner` runs it for every fetched batch and hands what it
leaves in the outbox to the delivery; the topology test driver (:mod:`stream_orch.testing`)
runs the same object over records it holds in memory. Fetching, pacing of retry tiers, sealing
the tables' overlays and delivering stay with the caller.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any

from aiokafka import TopicPartition

from stream_orch.codecs import codec_for
from stream_orch.codecs.schemas import SchemaRegistry
from stream_orch.runtime.batch import (
    BatchStats,
    Failure,
    NodeContext,
    decode_records,
    sample_timestamps,
    slices,
)
from stream_orch.runtime.external import ExternalRoutes
from stream_orch.runtime.failures import FailureRouter
from stream_orch.runtime.output import Outbox
from stream_orch.runtime.routing import Router
from stream_orch.runtime.topic_plans import table_written
from stream_orch.sinks import MemorySink, Sink, SinkBatch
from stream_orch.state.tables import LocalKeys, LocalTable
from stream_orch.steps.base import (
    Event,
    ExpiringStep,
    LineageStep,
    LocalIndexStep,
    PerRecordStep,
    Step,
    Table,
    TimedStep,
    UndoingStep,
)
from stream_orch.steps.registry import build_step, link_steps
from stream_orch.topology.models import AggregateStep, JoinStep, TopologySpec, WindowStep
from stream_orch.topology.models_delivery import external_targets
from stream_orch.topology.naming import DECODE_STAGE, group_id, node_retry_topic, step_labels
from stream_orch.topology.reloadable import KEEPS_STATE

# A node of only per-record steps (steps/base.PerRecordStep: forwarding) runs a batch in slices
# of SLICE records, decode to routes, while a slice's events are still in the CPU's caches
# (NodePipeline._in_slices)
SLICE = 256


class NodePipeline:
    """The parts of one node, built once: codec, steps, context, router and failure router."""

    def __init__(
        self,
        spec: TopologySpec,
        node_name: str,
        schemas: SchemaRegistry,
        tables: dict[str, Table],
        *,
        dlq_tracebacks: bool = False,
        sinks: dict[str, Sink] | None = None,
        denied: frozenset[str] = frozenset(),
    ) -> None:
        """``sinks``: one per external target of the node, by name (``sinks.build_sinks``); when
        not given, each target gets a :class:`~stream_orch.sinks.MemorySink` (the test driver).
        ``denied``: output topics the worker's user may not write (``runtime/access.py``)."""
        node = spec.nodes[node_name]
        self.spec, self._schemas, self._tracebacks = spec, schemas, dlq_tracebacks
        self._denied = denied
        self.steps: list[Step] = [
            build_step(s, topology_spec=spec, schemas=schemas, node_name=node_name) for s in node.steps
        ]
        link_steps(self.steps)
        self.expiring = [s for s in self.steps if isinstance(s, ExpiringStep)]
        # the steps whose watermark the records an earlier step let go (and watermark records)
        # still move: window, join, and a sliding aggregate (its per-source pruning limit)
        self.event_time_steps = {
            i
            for i, s in enumerate(node.steps)
            if isinstance(s, WindowStep | JoinStep) or (isinstance(s, AggregateStep) and s.window is not None)
        }
        self.undoing = [s for s in self.steps if isinstance(s, UndoingStep)]
        declare_local_keys(self.steps, node.steps, tables)
        self.step_labels = step_labels(node)  # the `step` label of what a step dead-letters
        self._tables = tables
        self.ctx = NodeContext(spec.topology, node_name, dict(spec.constants), tables)
        self.timed = [s for s in self.steps if isinstance(s, TimedStep)]
        lineage = [h for s in self.steps if isinstance(s, LineageStep) for h in s.lineage_headers]
        self.router = Router(spec, node_name, schemas, lineage=lineage, denied=denied)
        self.failures = FailureRouter(spec, node_name, tracebacks=dlq_tracebacks)
        # targets outside Kafka, delivered inside the batch (None: the node pays nothing for them)
        names = [t.name for t in external_targets(node)]
        self.external = ExternalRoutes(spec, node_name, schemas) if names else None
        self.sinks: dict[str, Sink] = sinks if sinks is not None else {n: MemorySink(n) for n in names}
        self.ctx.external_targets = frozenset(names)
        self._group = group_id(spec.topology, node_name)
        # the longest a retry may wait: its tier's delay, or what a destination asked for (429)
        self.longest_wait_ms = max(
            [*self.failures.delays, self.external.longest_wait_ms if self.external else 0]
        )
        # the topics the node reads, with the retry tier each one is (0: the input)
        self.tier_of: dict[str, int] = {node.input: 0}
        for n in range(1, len(self.failures.delays) + 1):
            self.tier_of[node_retry_topic(node, n)] = n
        decode = codec_for(spec.topics[node.input], schemas).decode
        self.decoders = dict.fromkeys(self.tier_of, decode)
        # the other streams of joins: their records enter at their join step, not at the first
        self.enters_at = {s.topic: i for i, s in enumerate(node.steps) if isinstance(s, JoinStep)}
        for topic in self.enters_at:
            self.tier_of[topic] = 0
            self.decoders[topic] = codec_for(spec.topics[topic], schemas).decode
        self.sliced = self._can_slice()

    def _can_slice(self) -> bool:
        """The node's batch gives the same outputs, failures (in the same order) and counts
        when run slice by slice: only per-record steps, no join, window, so.wm or external
        targets, which look at the batch as a whole."""
        return (
            not self.enters_at
            and self.external is None
            and not self.event_time_steps
            and not self.router.watermarks
            and all(isinstance(s, PerRecordStep) for s in self.steps)
        )

    def reload(self, spec: TopologySpec) -> None:
        """Take ``spec``, a version of the running one that ``reload_problems`` accepts, between
        two batches: its steps whose spec changed (and, when a constant changed, every step not
        keeping state: constants are compiled into expressions) are built again, and so are the
        routes and the failure router (they stamp the version); the steps keeping state, the
        tables, the sinks and the decoders stay."""
        node_name = self.ctx.node
        old, new = self.spec.nodes[node_name].steps, spec.nodes[node_name].steps
        constants = spec.constants != self.spec.constants
        for i, (before, after) in enumerate(zip(old, new, strict=True)):
            if before != after or (constants and after.step not in KEEPS_STATE):
                self.steps[i] = build_step(
                    after, topology_spec=spec, schemas=self._schemas, node_name=node_name
                )
        link_steps(self.steps)  # a validate after a normalize that changed checks what it no longer sets
        self.timed = [s for s in self.steps if isinstance(s, TimedStep)]
        lineage = [h for s in self.steps if isinstance(s, LineageStep) for h in s.lineage_headers]
        self.router = Router(spec, node_name, self._schemas, lineage=lineage, denied=self._denied)
        self.failures = FailureRouter(spec, node_name, tracebacks=self._tracebacks)
        self.step_labels = step_labels(spec.nodes[node_name])
        if self.external is not None:
            self.external = ExternalRoutes(spec, node_name, self._schemas)
        self.ctx.constants = dict(spec.constants)
        self.spec = spec
        self.sliced = self._can_slice()

    def prune(self, partitions: Collection[int]) -> None:
        """Expire the state of ``partitions`` that event time has left behind (old txn_ids, empty
        windows); the deletions go to the changelogs as tombstones with the next batch."""
        for step in self.expiring:
            table = self._tables[step.table_name]
            for partition in partitions:
                step.prune(table, partition)

    async def process(
        self, batches: dict[TopicPartition, list[Any]], outbox: Outbox, stats: BatchStats, now: int
    ) -> dict[TopicPartition, int]:
        """Decode ``batches`` (records with key, value, headers, offset and timestamp), run the
        steps, and add the outputs, retries and dead letters to ``outbox``; the steps' table
        writes are in the tables' overlays. Returns the offset to commit per partition."""
        ctx = self.ctx
        ctx.reset()
        if self.sliced and sum(map(len, batches.values())) > SLICE:
            offsets = await self._in_slices(batches, outbox, stats, now)
            self.failures.route(ctx.failures, outbox, stats, now)
            self.undo(ctx.failures)
            stats.dropped.update(ctx.dropped)
            return offsets
        events, offsets = decode_records(batches, self.tier_of, self.decoders, ctx, stats)
        retries: list[Event] = []
        if ctx.retry_targets:  # retries of one target: their record as rendered, no steps again
            targeted = ctx.retry_targets
            retries = [e for e in events if id(e) in targeted]
            events = [e for e in events if id(e) not in targeted]
        events = await (self._run_joined(events) if self.enters_at else self.run_steps(events, 0))
        for step in self.timed:
            stats.timings.extend(step.drain_timings())
        external = self.external
        if external is not None:  # before the Kafka routes: a record it rejects has no outputs
            events = external.render(events, ctx, retries)
        self.router.route(events, outbox, ctx, stats, now)
        if external is not None:
            batch = SinkBatch(ctx.topology, ctx.node, self._group, dict(offsets), now)
            await external.deliver(self.sinks, batch, ctx, stats)
        self.failures.route(ctx.failures, outbox, stats, now)
        # before the changelog is drained; a failed delivery undoes nothing: the event's state
        # and its other outputs stand (its retry does not run the steps again)
        self.undo([f for f in ctx.failures if f.target is None] if external is not None else ctx.failures)
        stats.dropped.update(ctx.dropped)
        return offsets

    async def _in_slices(
        self, batches: dict[TopicPartition, list[Any]], outbox: Outbox, stats: BatchStats, now: int
    ) -> dict[TopicPartition, int]:
        """:meth:`process`'s decode, steps and routes for a node that ``sliced`` allows, slice by
        slice; ``ctx.failures`` ends as one pass over the batch leaves it (a stage's failures
        after the earlier stage's, in the order of the events). A forwarded batch of 2,000
        records holds megabytes of events, dicts and outputs, which each stage would read again
        from memory."""
        ctx = self.ctx
        sample_timestamps(batches, stats)
        stages: list[list[Failure]] = [[] for _ in range(len(self.steps) + 2)]
        offsets: dict[TopicPartition, int] = {}
        n_in = 0
        targeted_events: list[Event] = []  # kept to the end: retry_targets holds their ids
        for part in slices(batches, SLICE):
            ctx.step = DECODE_STAGE
            events, part_offsets = decode_records(part, self.tier_of, self.decoders, ctx, stats, sample=False)
            n_in += stats.n_in
            offsets.update(part_offsets)
            if ctx.retry_targets:  # one target's retries: without external targets, none go out
                targeted = ctx.retry_targets
                targeted_events += [e for e in events if id(e) in targeted]
                events = [e for e in events if id(e) not in targeted]
            stages[0] += ctx.failures
            ctx.failures = []
            for i in range(len(self.steps)):
                events = await self.run_steps(events, i, i + 1)
                stages[i + 1] += ctx.failures
                ctx.failures = []
            self.router.route(events, outbox, ctx, stats, now)
            stages[-1] += ctx.failures
            ctx.failures = []
        for step in self.timed:
            stats.timings.extend(step.drain_timings())
        ctx.failures = [failure for stage in stages for failure in stage]
        stats.n_in = n_in
        return offsets

    async def _run_joined(self, events: list[Event]) -> list[Event]:
        """Run the steps with each joined stream's records added at its join step."""
        enters_at = self.enters_at
        flowing = [e for e in events if e.topic not in enters_at]
        start = 0
        for topic, at in sorted(enters_at.items(), key=lambda item: item[1]):
            flowing = await self.run_steps(flowing, start, stop=at)
            # the joined stream's records first: read ahead of the input by the join's window
            # (runtime/readorder.py), they move its time past the bounds of the input's records
            # of the batch, which the join then need not buffer (steps/join.py)
            flowing = [e for e in events if e.topic == topic] + flowing
            start = at
        return await self.run_steps(flowing, start)

    async def run_steps(self, events: list[Event], start: int, stop: int | None = None) -> list[Event]:
        """Run the steps from ``start`` (up to ``stop``); if a step raises, isolate the failing
        events one by one."""
        steps = self.steps
        for i in range(start, len(steps) if stop is None else stop):
            if not events and not (self.ctx.passed_over and i in self.event_time_steps):
                continue  # nothing to run, unless a window or join still has times to take
            self.ctx.step = self.step_labels[i]
            try:
                events = await steps[i].run(events, self.ctx)
            except Exception as exc:
                if len(events) == 1:
                    self.ctx.retry(events[0], type(exc).__name__, exc)
                    return []
                survivors: list[Event] = []
                for event in events:
                    survivors.extend(await self.run_steps([event], i, stop))
                return survivors
        return events

    def undo(self, failures: list[Failure]) -> None:
        """A failed event leaves nothing in a table (a dedupe mark, a window entry): its retry or
        replay must be neither a duplicate of itself nor counted twice."""
        if self.undoing:
            failed = [f.event for f in failures]
            for step in self.undoing:
                step.release(failed)


def declare_local_keys(steps: list[Step], specs: Sequence[Any], tables: dict[str, Table]) -> None:
    """Declare the local keys of the steps that keep some (:class:`LocalIndexStep`) on their
    tables; ``specs`` are the steps' specs. Only for a table no other step of the node writes:
    another step's keys could fall in the range, and would be lost from the changelog."""
    writers = Counter(table_written(spec) for spec in specs)
    for step in steps:
        if isinstance(step, LocalIndexStep):
            table = tables.get(step.table_name)
            if isinstance(table, LocalTable):
                alone = writers.get(step.table_name) == 1
                table.keep_local(LocalKeys(*step.local_keys, step.derive) if alone else None)
