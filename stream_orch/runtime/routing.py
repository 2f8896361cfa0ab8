"""Routes: which outputs an event becomes, rendered to bytes with the lineage headers.

Everything a route needs (conditions, setters, projections, encoders, constant headers) is
compiled once when the node starts; per event the router only evaluates and encodes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from stream_orch.codecs import codec_for, projection
from stream_orch.codecs.schemas import SchemaRegistry
from stream_orch.expressions import compile_expression
from stream_orch.reliability import headers as H
from stream_orch.runtime.batch import BatchStats, NodeContext
from stream_orch.runtime.output import Outbox
from stream_orch.spec.models import TopologySpec
from stream_orch.steps.base import Event

_LARGE = 64 * 1024  # only outputs above this size are measured exactly


class OutputTooLarge(ValueError):
    """An output record that no broker with default limits accepts: the event goes to the DLQ
    (a record that can never be produced would otherwise fail its batch on every restart)."""


@dataclass
class Target:
    """One output of a route, with everything it needs compiled once."""

    topic: str
    route: str
    key_field: str | None
    setters: list[tuple[str, Callable[[dict[str, Any]], Any]]]
    project: Callable[[dict[str, Any]], dict[str, Any]]
    encode: Callable[[dict[str, Any]], bytes]
    shape: tuple[str | None, str] | None = None  # (schema, format) when no `set`: same bytes
    sent: int = 0  # outputs in the current batch, folded into the batch stats

    def render(self, value: dict[str, Any], key: bytes | None) -> tuple[bytes | None, bytes]:
        out = self.project(value)
        for name, fn in self.setters:
            out[name] = fn(value)
        return self.key_of(out, key), self.encode(out)

    def key_of(self, value: dict[str, Any], key: bytes | None) -> bytes | None:
        if self.key_field is None:
            return key
        k = value.get(self.key_field)
        return None if k is None else str(k).encode()


class Router:
    """Routes with `when` are exclusive (the first match wins); routes without it always fire."""

    def __init__(self, spec: TopologySpec, node_name: str, schemas: SchemaRegistry) -> None:
        always, when, otherwise = _compile(spec, node_name, schemas)
        self._choices = [(condition, always + targets) for condition, targets in when]
        self._default = always + otherwise
        self._targets = always + otherwise + [t for _, targets in when for t in targets]
        self._static = [
            (H.TOPOLOGY, spec.topology.encode()),
            (H.VERSION, spec.version.encode()),
            (H.NODE, node_name.encode()),
        ]
        self._topic_headers: dict[str, tuple[str, bytes]] = {}
        self._partition_headers: dict[int, tuple[str, bytes]] = {}

    def route(
        self, events: list[Event], outbox: Outbox, ctx: NodeContext, stats: BatchStats, now: int
    ) -> None:
        """Add every event's outputs to ``outbox`` under the event's task; an event whose output
        cannot be rendered is rejected (to the DLQ with the reason)."""
        add = outbox.add
        static = self._static
        processed_at = (H.PROCESSED_AT, str(now).encode())
        choices, default = self._choices, self._default
        topic_headers, partition_headers = self._topic_headers, self._partition_headers
        user_headers = H.user_headers
        for event in events:
            value = event.value
            try:
                chosen = default
                for condition, targets in choices:
                    if condition(value):
                        chosen = targets
                        break
                rendered = []
                shared: dict[Any, bytes] | None = None
                for target in chosen:
                    if target.shape is None:
                        rendered.append(target.render(value, event.key))
                        continue
                    # outputs of one schema and format without `set` are the same bytes: encode once
                    if shared is None:
                        shared = {}
                    payload = shared.get(target.shape)
                    if payload is None:
                        payload = shared[target.shape] = target.encode(target.project(value))
                    rendered.append((target.key_of(value, event.key), payload))
                _check_size(zip(chosen, rendered, strict=True), event)
            except OutputTooLarge as exc:
                ctx.reject(event, str(exc), exc)
                continue
            except Exception as exc:
                ctx.reject(event, f"routing_error: {exc}", exc)
                continue
            src_topic = topic_headers.get(event.source_topic)
            if src_topic is None:
                src_topic = topic_headers[event.source_topic] = (H.SRC_TOPIC, event.source_topic.encode())
            src_partition = partition_headers.get(event.source_partition)
            if src_partition is None:
                src_partition = partition_headers[event.source_partition] = (
                    H.SRC_PARTITION,
                    str(event.source_partition).encode(),
                )
            headers = [
                *static,
                src_topic,
                src_partition,
                (H.SRC_OFFSET, str(event.source_offset).encode()),
                processed_at,
            ]
            if event.headers:
                headers.extend(user_headers(event.headers))
            timestamp, task = event.timestamp, event.partition
            for target, (key, payload) in zip(chosen, rendered, strict=True):
                add(task, target.topic, key, payload, headers, timestamp_ms=timestamp)
                target.sent += 1
        outputs = stats.outputs
        for target in self._targets:
            if target.sent:
                outputs[(target.route, target.topic)] += target.sent
                target.sent = 0


def _compile(
    spec: TopologySpec, node_name: str, schemas: SchemaRegistry
) -> tuple[list[Target], list[tuple[Callable, list[Target]]], list[Target]]:
    constants = spec.constants
    always: list[Target] = []
    when: list[tuple[Callable, list[Target]]] = []
    otherwise: list[Target] = []
    for index, route in enumerate(spec.nodes[node_name].routes):
        label = route.when or ("otherwise" if route.otherwise else "always")
        targets = []
        for target in route.targets():
            topic_spec = spec.topics[target.topic]
            schema_name = topic_spec.schema_
            targets.append(
                Target(
                    topic=target.topic,
                    route=f"{index}:{label}",
                    key_field=target.key or topic_spec.key,
                    setters=[
                        (name, compile_expression(src, constants=constants).fn)
                        for name, src in target.set.items()
                    ],
                    project=projection(
                        [f["name"] for f in schemas.fields(schema_name) if f["name"] not in target.set]
                    )
                    if schema_name
                    else dict,
                    encode=codec_for(topic_spec, schemas).encode,
                    shape=None if target.set else (schema_name, topic_spec.format),
                )
            )
        if route.when is not None:
            when.append((compile_expression(route.when, constants=constants).fn, targets))
        elif route.otherwise:
            otherwise.extend(targets)
        else:
            always.extend(targets)
    return always, when, otherwise


def _check_size(outputs: Iterable[tuple[Target, tuple[bytes | None, bytes]]], event: Event) -> None:
    """Raise :class:`OutputTooLarge` if an output of ``event`` exceeds ``H.MAX_RECORD_BYTES``.
    Lineage headers are counted as 1 KiB."""
    for target, (key, payload) in outputs:
        if len(payload) > _LARGE:
            size = H.record_size(key, payload, H.user_headers(event.headers)) + 1024
            if size > H.MAX_RECORD_BYTES:
                raise OutputTooLarge(
                    f"output_too_large: {size} bytes for {target.topic} (limit {H.MAX_RECORD_BYTES})"
                )
