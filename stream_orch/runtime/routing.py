"""Routes: which outputs an event becomes, rendered to bytes with the lineage headers.

Everything a route needs (conditions, setters, projections, encoders, constant headers) is
compiled once when the node starts; per event the router only evaluates and encodes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from stream_orch.codecs import JsonCodec, NonFiniteNumber, codec_for
from stream_orch.codecs.conform import OutputSchemaViolation, field_conformer, output_projection
from stream_orch.codecs.schemas import SchemaRegistry
from stream_orch.expressions import CompiledExpression, compile_expression
from stream_orch.expressions.hoist import hoist_reads
from stream_orch.reliability import headers as H
from stream_orch.runtime.batch import BatchStats, NodeContext
from stream_orch.runtime.output import Lane, Outbox
from stream_orch.steps import source_watermarks as sw
from stream_orch.steps.base import Event
from stream_orch.topology.graph import route_label
from stream_orch.topology.models import TopologySpec
from stream_orch.topology.naming import ROUTE_STAGE
from stream_orch.transport.records import SMALL_VARINTS, encode_header, varint

_LARGE = 64 * 1024  # only outputs above this size are measured exactly


class WriteDenied(Exception):
    """An output topic the worker's user may not write (found at start, ``runtime/access.py``):
    the event goes where the error policy sends ``not_authorized`` (its DLQ, unless a retry tier
    lists it), all its outputs with it, so that nothing of it is lost or half-written."""

    def __init__(self, topic: str) -> None:
        super().__init__(f"not_authorized: WRITE on topic {topic}")


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
    # the event's value as the topic's schema has it (its fields, in its types): raises
    # OutputSchemaViolation when a value cannot be written (see codecs.conform)
    project: Callable[[dict[str, Any]], dict[str, Any]]
    encode: Callable[[dict[str, Any]], bytes]
    shape: tuple[str | None, str] | None = None  # (schema, format) when no `set`: same bytes
    conform: Callable[[dict[str, Any]], None] | None = None  # the `set` fields in the schema's types
    # a topic a window of the topology reads with per-source watermarks: its records carry so.wm
    watermarked: bool = False
    denied: bool = False  # the worker's user may not write the topic
    sent: int = 0  # outputs in the current batch, folded into the batch stats
    # the topic's records in the outbox, shared by all targets of the topic (set by the Router)
    lane: Lane = field(default_factory=lambda: Lane(""))

    def render(self, value: dict[str, Any], key: bytes | None) -> tuple[bytes | None, bytes]:
        out = self.project(value)
        for name, fn in self.setters:
            out[name] = fn(value)
        if self.conform is not None:
            self.conform(out)
        # the key field as `set` left it, else the record's (the schema need not carry the key)
        return self.key_of(out if self.key_field in out else value, key), self.encode(out)

    def key_of(self, value: dict[str, Any], key: bytes | None) -> bytes | None:
        if self.key_field is None:
            return key
        k = value.get(self.key_field)
        return None if k is None else str(k).encode()


# How an output's bytes are made, decided once per target (in this order of precedence)
_DENIED, _SET, _SAME, _AS_IS, _PROJECTED, _JSON = range(6)

# One output of an event, planned once per set of targets: (target, index of an earlier target
# whose bytes it reuses or -1, how its bytes are made, the target's encode, project and key
# field). Outputs of one schema and format without `set` are the same bytes. The target's
# attributes are in the tuple because the router reads them per output: unpacking a tuple was
# cheaper than the attribute loads.
Plan = list[tuple[Target, int, int, Callable[..., bytes], Callable[..., Any], str | None]]


def _plan(targets: list[Target]) -> Plan:
    first: dict[tuple[str | None, str], int] = {}
    plan: Plan = []
    for i, target in enumerate(targets):
        same = -1 if target.shape is None else first.setdefault(target.shape, i)
        same = -1 if same == i else same
        if target.denied:
            how = _DENIED
        elif target.setters:
            how = _SET
        elif same >= 0:
            how = _SAME
        elif target.project is dict:  # no schema, no `set`: nothing to copy
            how = _AS_IS
        elif _json_conformed(target.encode):
            how = _JSON
        else:
            how = _PROJECTED
        plan.append((target, same, how, target.encode, target.project, target.key_field))
    return plan


def _json_conformed(encode: Callable[..., bytes]) -> bool:
    """``encode`` is a plain JsonCodec's ``encode_conformed``: orjson's bytes, copied to their
    size (see json_codec._dumps), which the router then makes itself."""
    owner = getattr(encode, "__self__", None)
    return owner.__class__ is JsonCodec and getattr(encode, "__func__", None) is JsonCodec.encode_conformed


class Router:
    """Routes with `when` are exclusive (the first match wins); routes without it always fire."""

    def __init__(
        self,
        spec: TopologySpec,
        node_name: str,
        schemas: SchemaRegistry,
        *,
        lineage: list[tuple[str, bytes]] | None = None,
        denied: frozenset[str] = frozenset(),
    ) -> None:
        """``lineage``: more constant headers of every output (a model step's name, version, hash);
        ``denied``: topics the worker may not write (their events are rejected: :class:`WriteDenied`)."""
        always, when, otherwise = _compile(spec, node_name, schemas)
        for target in always + otherwise + [t for _, targets in when for t in targets]:
            target.denied = target.topic in denied
        self._choices = [(condition.fn, _plan(always + targets)) for condition, targets in when]
        self._default = _plan(always + otherwise)
        self._choose = _chooser(
            [(condition, plan) for (condition, _), (_, plan) in zip(when, self._choices, strict=True)],
            self._default,
        )
        self._targets = always + otherwise + [t for _, targets in when for t in targets]
        self._lanes: dict[str, Lane] = {}
        for target in self._targets:
            target.lane = self._lanes.setdefault(target.topic, Lane(target.topic))
        # the topics this node writes that a window of the topology reads: their records carry so.wm
        self._watched = list(dict.fromkeys(t.topic for t in self._targets if t.watermarked))
        # (a node writing two watched topics whose windows read different fields tags by the first)
        self._time_field = sw.watched_topics(spec)[self._watched[0]] if self._watched else ""
        self._node = node_name
        self._marks: dict[int, int] = {}  # input partition -> greatest event time routed so far
        self._static = [
            (H.TOPOLOGY, spec.topology.encode()),
            (H.VERSION, spec.version.encode()),
            (H.NODE, node_name.encode()),
            *(lineage or ()),
        ]
        # source topic -> source partition -> the lineage headers up to so.src.partition, which only the
        # offset and the batch's processed_at follow: as a list, and encoded as a record carries
        # them (their count with the two that follow, and the offset header's name)
        self._prefixes: dict[str, dict[int, tuple[list[tuple[str, bytes]], bytes]]] = {}
        # one output per event, without `when`, `set`, so.wm or a denied topic (forwarding): its
        # own loop, without the per-event list of rendered outputs and the plan's inner loop
        # (routing 1.51 -> 1.09-1.17 µs per forwarded record, hand-inlined in a hotpath-style loop)
        only = self._default[0][0] if len(self._default) == 1 and not self._choices else None
        self._single = (
            only if only is not None and not (only.setters or only.denied or self._watched) else None
        )

    @property
    def watermarks(self) -> bool:
        """Its outputs carry so.wm, and each batch ends with watermark records."""
        return bool(self._watched)

    def _prefix(self, topic: str, partition: int) -> tuple[list[tuple[str, bytes]], bytes]:
        prefix = [*self._static, (H.SRC_TOPIC, topic.encode()), (H.SRC_PARTITION, str(partition).encode())]
        offset_name = H.SRC_OFFSET.encode()
        entries = b"".join([encode_header(name, value) for name, value in prefix])
        encoded = varint(len(prefix) + 2) + entries + varint(len(offset_name)) + offset_name
        self._prefixes.setdefault(topic, {})[partition] = (prefix, encoded)
        return prefix, encoded

    def route(
        self, events: list[Event], outbox: Outbox, ctx: NodeContext, stats: BatchStats, now: int
    ) -> None:
        """Add every event's outputs to ``outbox`` under the event's task; an event whose output
        cannot be rendered is rejected (to the DLQ with the reason)."""
        ctx.step = ROUTE_STAGE  # what it rejects was dead-lettered at the routes
        for lane in self._lanes.values():
            lane.begin(outbox)
        if self._single is not None:
            self._route_single(self._single, events, ctx, stats, now)
            return
        processed_at = (H.PROCESSED_AT, str(now).encode())
        processed_at_header = encode_header(*processed_at)
        small, join = SMALL_VARINTS, b"".join
        src_offset = H.SRC_OFFSET
        choose, choose_one_by_one = self._choose, self._choose_one_by_one
        dumps, tobytes = orjson.dumps, memoryview.tobytes
        prefixes = self._prefixes
        user_headers = H.user_headers
        watched = bool(self._watched)
        for event in events:
            value = event.value
            key = event.key
            rendered: list[tuple[Target, bytes | None, bytes]] = []
            large = False
            key_field: str | None = None  # the last key read from the record, reused by the next
            value_key: bytes | None = None  # output keyed by the same field (Target.key_of inline)
            try:
                try:
                    chosen = choose(value)
                except Exception:  # again condition by condition: raises as the failing one does
                    chosen = choose_one_by_one(value)
                for target, same_as, how, encode, project, target_key in chosen:
                    if how == _DENIED:
                        raise WriteDenied(target.topic)
                    if how == _SET:
                        out_key, payload = target.render(value, key)
                    else:
                        if how == _JSON:  # JsonCodec.encode_conformed inline (a call less)
                            out = project(value)
                            try:
                                payload = tobytes(memoryview(dumps(out)))
                            except Exception:  # the codec's own error
                                payload = encode(out)
                        elif how == _PROJECTED:
                            payload = encode(project(value))
                        elif how == _SAME:
                            payload = rendered[same_as][2]
                        else:
                            payload = encode(value)
                        if target_key is None:
                            out_key = key
                        else:
                            if target_key != key_field:
                                key_field = target_key
                                k = value.get(key_field)
                                if k is None:
                                    value_key = None
                                else:  # str() of a str is that str, after a call: that case first
                                    value_key = (k if k.__class__ is str else str(k)).encode()
                            out_key = value_key
                    if len(payload) > _LARGE:
                        large = True
                    rendered.append((target, out_key, payload))
                if large:
                    _check_size(((t, (k, p)) for t, k, p in rendered), event)
            except NonFiniteNumber as exc:  # a JSON output without a schema: inf or nan, not null
                ctx.reject(event, f"output_schema_violation: {target.topic}.{exc.detail}", exc)
                continue
            except Exception as exc:  # the event goes to the DLQ, never a malformed output out
                ctx.reject(event, _reason(exc), exc)
                continue
            if not rendered and not watched:  # no Kafka output (e.g. only targets outside Kafka)
                continue
            by_partition = prefixes.get(event.source_topic)
            prefixed = by_partition.get(event.source_partition) if by_partition is not None else None
            if prefixed is None:
                prefixed = self._prefix(event.source_topic, event.source_partition)
            offset = b"%d" % event.source_offset
            headers: list[tuple[str, bytes]] | bytes
            if event.headers or watched:  # more headers after these: a list
                headers = [*prefixed[0], (src_offset, offset), processed_at]
                if event.headers:
                    headers.extend(user_headers(event.headers))
            else:  # the lineage headers alone, as the record batch writes them
                headers = join((prefixed[1], small[len(offset)], offset, processed_at_header))
            timestamp, task = event.timestamp, event.partition
            tagged = self._tagged(headers, value, task) if watched else headers  # type: ignore[arg-type]
            for target, out_key, payload in rendered:
                lane = target.lane  # Lane's per-record steps, inline
                if lane.task != task:
                    lane.switch(task)
                partition = lane.cache.get(out_key)  # type: ignore[arg-type]
                if partition is None:
                    partition = lane.partition(out_key)
                records = lane.lists.get(partition)
                if records is None:
                    records = lane.open(partition)
                records.append(
                    (out_key, payload, timestamp, tagged if watched and target.watermarked else headers)
                )
                target.sent += 1
        if watched:  # after the outputs: each partition's last record
            self._watermark_records(events, ctx, outbox)
        outputs = stats.outputs
        for target in self._targets:
            if target.sent:
                outputs[(target.route, target.topic)] += target.sent
                target.sent = 0

    def _route_single(
        self, target: Target, events: list[Event], ctx: NodeContext, stats: BatchStats, now: int
    ) -> None:
        """:meth:`route` for one plain target (``_single``): the same outputs, rejections and
        counts, its steps inline."""
        processed_at = (H.PROCESSED_AT, str(now).encode())
        processed_at_header = encode_header(*processed_at)
        small, join = SMALL_VARINTS, b"".join
        src_offset = H.SRC_OFFSET
        prefixes = self._prefixes
        user_headers = H.user_headers
        encode, project, key_field = target.encode, target.project, target.key_field
        as_is = project is dict  # no schema, no `set`: nothing to copy
        lane = target.lane
        sent = 0
        for event in events:
            value = event.value
            key = event.key
            try:
                payload = encode(value) if as_is else encode(project(value))
                if key_field is None:
                    out_key = key
                else:
                    k = value.get(key_field)
                    out_key = None if k is None else str(k).encode()
                if len(payload) > _LARGE:
                    _check_size(((target, (out_key, payload)),), event)
            except NonFiniteNumber as exc:  # a JSON output without a schema: inf or nan, not null
                ctx.reject(event, f"output_schema_violation: {target.topic}.{exc.detail}", exc)
                continue
            except Exception as exc:  # the event goes to the DLQ, never a malformed output out
                ctx.reject(event, _reason(exc), exc)
                continue
            by_partition = prefixes.get(event.source_topic)
            prefixed = by_partition.get(event.source_partition) if by_partition is not None else None
            if prefixed is None:
                prefixed = self._prefix(event.source_topic, event.source_partition)
            offset = b"%d" % event.source_offset
            headers: list[tuple[str, bytes]] | bytes
            if event.headers:  # the record's own headers after these: a list
                headers = [*prefixed[0], (src_offset, offset), processed_at, *user_headers(event.headers)]
            else:  # the lineage headers alone, as the record batch writes them
                headers = join((prefixed[1], small[len(offset)], offset, processed_at_header))
            task = event.partition
            if lane.task != task:  # Lane's per-record steps, inline
                lane.switch(task)
            partition = lane.cache.get(out_key)  # type: ignore[arg-type]
            if partition is None:
                partition = lane.partition(out_key)
            records = lane.lists.get(partition)
            if records is None:
                records = lane.open(partition)
            records.append((out_key, payload, event.timestamp, headers))
            sent += 1
        if sent:
            stats.outputs[(target.route, target.topic)] += sent

    def _choose_one_by_one(self, value: dict[str, Any]) -> Plan:
        """The plan of the first route whose `when` holds for ``value`` (else the default), each
        condition called as compiled: a failure is explained as the expression's own."""
        for condition, plan in self._choices:
            if condition(value):
                return plan
        return self._default

    def _tagged(
        self, headers: list[tuple[str, bytes]], value: dict[str, Any], task: int
    ) -> list[tuple[str, bytes]]:
        """``headers`` with ``so.wm``: the greatest event time of the input partition so far."""
        t = value.get(self._time_field)
        mark = self._marks.get(task, -1)
        if t.__class__ is int and t > mark:
            mark = self._marks[task] = t
        return [*headers, sw.header(self._node, task, mark)]

    def _watermark_records(self, events: list[Event], ctx: NodeContext, outbox: Outbox) -> None:
        """One watermark record per partition of each watched topic for every input partition of
        the batch, after its outputs: the partition's time reaches readers its records missed.
        Records an earlier step let go (filtered...) move it too."""
        field = self._time_field
        marks = self._marks
        for event in ctx.passed_over:
            t = event.value.get(field)
            if t.__class__ is int and t > marks.get(event.partition, -1):
                marks[event.partition] = t
        tasks = {e.partition for e in events} | {e.partition for e in ctx.passed_over}
        for task in sorted(tasks):
            mark = marks.get(task, -1)
            if mark < 0:
                continue
            headers = [sw.header(self._node, task, mark), (sw.WATERMARK_ONLY, b"")]
            for topic in self._watched:
                for partition in range(outbox.partition_count(topic)):
                    outbox.add(task, topic, None, None, headers, partition=partition)


def _chooser(
    choices: list[tuple[CompiledExpression, Plan]], default: Plan
) -> Callable[[dict[str, Any]], Plan]:
    """The routes' conditions as one generated function of a record, returning the plan of the
    first that holds (else ``default``), with the compiled bodies inline (a call per condition
    was most of choosing). It explains no failure: the router then calls the conditions one by
    one (:meth:`Router._choose_one_by_one`), which raise as compiled. Each body is the expression
    compiler's whitelisted output over its own globals, whose names are unique per expression;
    the error raisers they share are only reached on failure."""
    if not all(condition.body for condition, _ in choices):  # nothing to inline: one by one
        return lambda value: _first(choices, default, value)
    namespace: dict[str, Any] = {}
    reads, bodies = hoist_reads([condition.body for condition, _ in choices])  # `score` twice: once
    lines = ["def choose(r):", *(f"    {read}" for read in reads)]
    for i, ((condition, plan), body) in enumerate(zip(choices, bodies, strict=True)):
        namespace.update(condition.fn.__globals__)
        namespace[f"__plan{i}"] = plan
        lines += [f"    if {body}:", f"        return __plan{i}"]
    lines.append("    return __default")
    namespace.update(__builtins__={}, __default=default)
    exec(compile("\n".join(lines) + "\n", "<route conditions>", "exec"), namespace)
    return namespace["choose"]


def _first(choices: list[tuple[CompiledExpression, Plan]], default: Plan, value: dict[str, Any]) -> Plan:
    for condition, plan in choices:
        if condition.fn(value):
            return plan
    return default


def _compile(
    spec: TopologySpec, node_name: str, schemas: SchemaRegistry
) -> tuple[list[Target], list[tuple[CompiledExpression, list[Target]]], list[Target]]:
    constants = spec.constants
    watched = sw.watched_topics(spec)
    own_input = spec.nodes[node_name].input
    always: list[Target] = []
    when: list[tuple[CompiledExpression, list[Target]]] = []
    otherwise: list[Target] = []
    for index, route in enumerate(spec.nodes[node_name].routes):
        label = route_label(index, route)
        targets = []
        for target in route.targets():
            topic_spec = spec.topics[target.topic]
            schema_name = topic_spec.schema_
            schema = schemas.raw(schema_name) if schema_name else None
            in_schema = {f["name"] for f in schema["fields"]} if schema is not None else None
            codec = codec_for(topic_spec, schemas)
            # a `set` field the schema lacks would be projected away (lint reports it)
            setting = [n for n in target.set if in_schema is None or n in in_schema]
            targets.append(
                Target(
                    topic=target.topic,
                    route=label,
                    key_field=target.key or topic_spec.key,
                    setters=[
                        (name, compile_expression(target.set[name], constants=constants).fn)
                        for name in setting
                    ],
                    project=output_projection(schema, target.topic, exclude=setting)
                    if schema is not None
                    else dict,
                    # with a schema, project and conform check every field the codec writes
                    encode=codec.encode_conformed if schema is not None else codec.encode,
                    shape=None if setting else (schema_name, topic_spec.format),
                    conform=field_conformer(schema, target.topic, setting) if schema is not None else None,
                    watermarked=target.topic in watched and target.topic != own_input,
                )
            )
        if route.when is not None:
            when.append((compile_expression(route.when, constants=constants), targets))
        elif route.otherwise:
            otherwise.extend(targets)
        else:
            always.extend(targets)
    return always, when, otherwise


def _reason(exc: Exception) -> str:
    """The dead letter's reason when routing an event raised ``exc`` (a non-finite number is
    named with its target's topic, where it is caught)."""
    if isinstance(exc, (OutputTooLarge, WriteDenied)):
        return str(exc)
    if isinstance(exc, OutputSchemaViolation):
        return f"output_schema_violation: {exc}"
    return f"routing_error: {exc}"


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
