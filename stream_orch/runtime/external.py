"""Routes to targets outside Kafka, inside the batch (the seam: :mod:`stream_orch.sinks.base`).

:meth:`ExternalRoutes.render` runs before the Kafka routes: each event's records for the external
targets its routes choose (the same `when` / `otherwise` rules as the Kafka routes), projected onto
the target's schema when it names one and encoded as JSON. An event that cannot be rendered for
a target is rejected before any of its outputs exists; a retry of one target (``so.retry.target``)
is rendered for that target only and goes to no Kafka route. :meth:`ExternalRoutes.deliver` then
hands each sink its records, all sinks at once, and turns every record that was not delivered
into a failure of its event for the node's :class:`~stream_orch.runtime.failures.FailureRouter`.

A node without external targets builds none of this (``NodePipeline`` checks once per batch).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stream_orch.codecs import JsonCodec, NonFiniteNumber
from stream_orch.codecs.conform import OutputSchemaViolation, output_projection
from stream_orch.codecs.schemas import SchemaRegistry
from stream_orch.expressions import compile_expression
from stream_orch.runtime.batch import BatchStats, Failure, NodeContext
from stream_orch.sinks.base import Delivered, Outcome, Reject, Retry, Sink, SinkBatch, SinkRecord
from stream_orch.steps.base import Event
from stream_orch.topology.models import TopologySpec
from stream_orch.topology.models_delivery import external_targets
from stream_orch.topology.naming import ROUTE_STAGE

log = logging.getLogger(__name__)


@dataclass
class ExternalOut:
    """One external target of the node, compiled once; ``records`` holds the batch's."""

    name: str
    project: Callable[[dict[str, Any]], dict[str, Any]]
    encode: Callable[[dict[str, Any]], bytes]
    records: list[SinkRecord] = field(default_factory=list)


def _no_payload(value: dict[str, Any]) -> bytes:
    return b""


class ExternalRoutes:
    def __init__(self, spec: TopologySpec, node_name: str, schemas: SchemaRegistry) -> None:
        node = spec.nodes[node_name]
        encode = JsonCodec().encode
        self._json = encode
        self.targets: dict[str, ExternalOut] = {}
        by_route: dict[int, list[ExternalOut]] = {}
        for named in external_targets(node):
            schema_name = named.spec.schema_
            project = output_projection(schemas.raw(schema_name), named.name) if schema_name else dict
            # a target that takes the value itself (postgres) does not pay for JSON it never sends
            out = ExternalOut(named.name, project, encode if named.spec.sends_json else _no_payload)
            self.targets[named.name] = out
            by_route.setdefault(named.route, []).append(out)
        always: list[ExternalOut] = []
        otherwise: list[ExternalOut] = []
        when: list[tuple[Callable[[dict[str, Any]], Any], list[ExternalOut]]] = []
        for i, route in enumerate(node.routes):
            outs = by_route.get(i, [])
            if route.when is not None:
                when.append((compile_expression(route.when, constants=spec.constants).fn, outs))
            elif route.otherwise:
                otherwise.extend(outs)
            else:
                always.extend(outs)
        self._choices = [(condition, always + outs) for condition, outs in when]
        self._default = always + otherwise
        self.longest_wait_ms = max((t.spec.longest_wait_ms() for t in external_targets(node)), default=0)

    def render(self, events: list[Event], ctx: NodeContext, retries: list[Event]) -> list[Event]:
        """Render every event's external records, and add ``retries`` (retries of one target,
        their value the record as it was rendered) to their targets' records; returns the events
        that go on to the Kafka routes (those not rejected here)."""
        ctx.step = ROUTE_STAGE  # rendering for a target is routing, as for a topic
        places: dict[tuple[str, str, int, int], int] = {}  # (target, source) -> records so far
        for target in self.targets.values():
            target.records = []
        for event in retries:
            name, index = ctx.retry_targets[id(event)]
            self.targets[name].records.append(_record(event, event.value, event.raw_value or b"", index))
        go_on: list[Event] = []
        for event in events:
            value = event.value
            rendered: list[tuple[ExternalOut, dict[str, Any], bytes]] = []
            try:
                chosen = self._default
                for condition, outs in self._choices:  # a condition may fail on the record's values
                    if condition(value):
                        chosen = outs
                        break
                for target in chosen:
                    out = target.project(value)
                    rendered.append((target, out, target.encode(out)))
            except OutputSchemaViolation as exc:
                ctx.reject(event, f"output_schema_violation: {exc}", exc)
                continue
            except NonFiniteNumber as exc:
                ctx.reject(event, f"output_schema_violation: {target.name}.{exc.detail}", exc)
                continue
            except Exception as exc:
                ctx.reject(event, f"routing_error: {exc}", exc)
                continue
            source = (event.source_topic, event.source_partition, event.source_offset)
            for target, out, payload in rendered:
                place = (target.name, *source)
                index = places.get(place, 0)  # one record per input record, but for window results
                places[place] = index + 1
                target.records.append(_record(event, out, payload, index))
            go_on.append(event)
        return go_on

    async def deliver(
        self, sinks: dict[str, Sink], batch: SinkBatch, ctx: NodeContext, stats: BatchStats
    ) -> None:
        """Every sink's records of the batch, all sinks at once; what was not delivered becomes a
        failure of its event (retried for that target, or dead-lettered)."""
        names = list(self.targets)
        results = await asyncio.gather(
            *(_deliver(sinks[name], self.targets[name].records, batch) for name in names)
        )
        for name, outcomes in zip(names, results, strict=True):
            records = self.targets[name].records
            self.targets[name].records = []
            for record, outcome in zip(records, outcomes, strict=True):
                kind = outcome.__class__
                stats.sinks[(name, _KINDS[kind])] += 1
                if kind is Delivered:
                    continue
                if kind is Retry:
                    retry: Retry = outcome  # type: ignore[assignment]
                    failure = Failure(
                        record.event, retry.reason, None, True, name, retry.not_before_ms,
                        payload=self._kept(record), index=record.index,
                    )  # fmt: skip
                else:
                    reject: Reject = outcome  # type: ignore[assignment]
                    reason = f"{reject.reason}: {reject.detail}" if reject.detail else reject.reason
                    failure = Failure(
                        record.event, reason, None, False, name, None, reject.headers,
                        payload=self._kept(record), index=record.index,
                    )  # fmt: skip
                ctx.failures.append(failure)

    def _kept(self, record: SinkRecord) -> bytes:
        """What a failed record's retry or dead letter carries: the record as rendered for its
        target. A target that takes the value itself (postgres) rendered no JSON, so it is encoded
        here, on the failure path only (a dead letter keeps the record's bytes)."""
        if record.payload:
            return record.payload
        try:
            return self._json(record.value)
        except NonFiniteNumber:  # a value the database took as it was: the input's own bytes
            return record.event.raw_value or b""


_KINDS = {Delivered: "delivered", Retry: "retried", Reject: "rejected"}


def _record(event: Event, value: dict[str, Any], payload: bytes, index: int) -> SinkRecord:
    return SinkRecord(
        value, payload, event.key, (event.topic, event.partition, event.offset),
        (event.source_topic, event.source_partition, event.source_offset),
        event.timestamp, event.attempt, event, index,
    )  # fmt: skip


async def _deliver(sink: Sink, records: list[SinkRecord], batch: SinkBatch) -> list[Outcome]:
    """``sink.deliver`` held to the seam's rules: an exception, or a wrong number of outcomes, is a
    retry of every record (the sink is at fault, not the records)."""
    try:
        outcomes = await sink.deliver(records, batch)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.warning(
            "target %s failed a delivery: %s", sink.name, type(exc).__name__, extra={"node": batch.node}
        )
        return [Retry(f"sink_error: {type(exc).__name__}")] * len(records)
    if len(outcomes) != len(records) or not all(o.__class__ in _KINDS for o in outcomes):
        log.warning("target %s answered %d outcomes for %d records", sink.name, len(outcomes), len(records))
        return [Retry("sink_error: outcomes")] * len(records)
    return outcomes
