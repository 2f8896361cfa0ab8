"""The field flow of one node, step by step and through its routes (the rules are in
:mod:`stream_orch.topology.field_flow`'s docstring)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache

from stream_orch.expressions import ExpressionError, compile_expression
from stream_orch.topology.field_flow import (
    FieldInfo,
    Level,
    NodeFlow,
    Origin,
    Output,
    PathTuple,
    Record,
    Rest,
    SchemaLookup,
    combine,
    input_record,
    read_field,
    scheduled_record,
    schema_fields,
    table_rows,
)
from stream_orch.topology.models import (
    AggregateStep,
    DeriveStep,
    EnrichStep,
    FilterStep,
    JoinStep,
    MaskStep,
    ModelStep,
    NormalizeStep,
    PythonStep,
    ScoreStep,
    TopologySpec,
    WindowStep,
)
from stream_orch.topology.models_flow import RepartitionStep

# window and aggregate functions whose result is one of the values read (so it keeps their PII);
# count, sum, avg and count_distinct give a number that names no one
_VALUE_FUNCTIONS = frozenset({"min", "max", "first", "last", "latest", "collect"})


@lru_cache(maxsize=4096)
def _reads(source: str, constants: str) -> frozenset[str] | None:
    try:
        return compile_expression(source, json.loads(constants)).fields
    except (ExpressionError, ValueError):
        return None  # lint reports the expression


def expression_fields(spec: TopologySpec, source: str) -> frozenset[str]:
    """The fields an expression reads (none when it does not compile: lint reports that)."""
    reads = _reads(source, json.dumps(spec.constants, sort_keys=True, default=str))
    return (reads or frozenset()) - set(spec.constants)


def _computed(spec: TopologySpec, record: Record, source: str, how: str, at: PathTuple) -> FieldInfo:
    reads = expression_fields(spec, source)
    infos = [info for name in sorted(reads) if (info := record.get(name)) is not None]
    identity = source.strip() in reads and len(reads) == 1  # `x` alone copies x
    return combine(infos, how, at, "IDENTITY" if identity else "TRANSFORMATION")


def _conditions(spec: TopologySpec, record: Record, source: str) -> frozenset[Origin]:
    """The input fields an expression that decides (filter, route `when`) reads."""
    info = _computed(spec, record, source, "", ())
    return frozenset(Origin(o.topic, o.field, o.table, "CONDITIONAL") for o in info.origins)


def node_flow(
    spec: TopologySpec, schema: SchemaLookup, name: str, carried: Mapping[str, Mapping[str, Level]]
) -> NodeFlow:
    """Every route target of node ``name`` with where each field it writes comes from."""
    node = spec.nodes[name]
    if node.schedule is not None:
        record = scheduled_record(spec, schema, name, carried)
        reads = [t for s in node.schedule.scan if (t := _table_topic(spec, s.table))]
        key = _row_key(spec, record, node.schedule.scan[0].table) if node.schedule.scan else None
    else:
        record = input_record(spec, schema, node.input, carried)
        reads = [node.input]
        input_key = spec.topics[node.input].key if node.input in spec.topics else None
        key = record.get(input_key) if input_key else None  # the input's key bytes, as read
    filters: frozenset[Origin] = frozenset()
    for i, step in enumerate(node.steps):
        at: PathTuple = ("nodes", name, "steps", i)
        if isinstance(step, RepartitionStep):  # re-keyed by the field
            key = record.get(step.by)
        if isinstance(step, EnrichStep | JoinStep):
            topic = step.topic if isinstance(step, JoinStep) else _table_topic(spec, step.table)
            if topic and topic not in reads:
                reads.append(topic)
        if isinstance(step, FilterStep):
            filters |= _conditions(spec, record, step.when)
        record = _step(spec, schema, record, step, at)
        if isinstance(step, WindowStep):  # a result is keyed by its window's key
            key = record.get(step.key)
    outputs = []
    # a `when` route fires when no earlier `when` matched: those decide too; `otherwise`, all of them
    whens = [_conditions(spec, record, r.when) if r.when is not None else frozenset() for r in node.routes]
    for i, route in enumerate(node.routes):
        deciding = filters
        if route.when is not None:
            deciding = deciding.union(*whens[: i + 1])
        elif route.otherwise:
            deciding = deciding.union(*whens)
        for j, target in enumerate(route.targets()):
            path: PathTuple = ("nodes", name, "routes", i, "to", j)
            out = record.copy()
            for field, source in target.set.items():
                out.fields[field] = _computed(
                    spec, record, source, f"set `{source.strip()}`", (*path, "set", field)
                )
            topic = spec.topics.get(target.topic)
            key_field = target.key or (topic.key if topic is not None else None)
            # the key field as `set` left it, else the record's; no key field: the input's key
            out_key = out.get(key_field) if key_field else key
            outputs.append(_project(spec, schema, name, target.topic, path, out, deciding, out_key))
    return NodeFlow(spec.topology, name, tuple(reads), tuple(outputs))


def _row_key(spec: TopologySpec, record: Record, table: str) -> FieldInfo | None:
    """A scanned row's key: the field keying its table."""
    t = spec.tables.get(table)
    source = spec.topics.get(t.topic or "") if t is not None else None
    field = (t.key if t is not None else None) or (source.key if source is not None else None)
    return record.get(field) if field else None


def _table_topic(spec: TopologySpec, table: str) -> str | None:
    t = spec.tables.get(table)
    return t.topic if t is not None else None


def _project(
    spec: TopologySpec,
    schema: SchemaLookup,
    node: str,
    topic: str,
    path: PathTuple,
    record: Record,
    conditions: frozenset[Origin],
    key: FieldInfo | None,
) -> Output:
    """What reaches ``topic``: the record projected onto the topic's schema (the runtime's rule)."""
    t = spec.topics.get(topic)
    fields = schema_fields(schema(t.schema_)) if t is not None and t.schema_ else None
    if fields is None:
        # every field goes: those of the rest that carry PII are named, so the policy can see them
        out = dict(record.fields)
        for rest in record.rest:
            for name in record.topic_pii.get(rest.topic or "", {}):
                if name not in out and (info := record.get(name)) is not None:
                    out[name] = info
        return Output(spec.topology, node, topic, path, out, False, record.rest, conditions, key)
    kept = {f["name"]: info for f in fields if (info := record.get(f["name"])) is not None}
    return Output(spec.topology, node, topic, path, kept, True, (), conditions, key)


def _step(spec: TopologySpec, schema: SchemaLookup, record: Record, step: object, at: PathTuple) -> Record:
    record = record.copy()
    fields = record.fields
    if isinstance(step, NormalizeStep):
        for name, rule in step.fields.items():
            info = record.get(name)
            if info is not None:
                fields[name] = combine([info], "normalize", (*at, "fields", name), "TRANSFORMATION")
            elif rule.default is not None or not rule.required:
                fields[name] = FieldInfo(frozenset(), "normalize (default)", (*at, "fields", name))
    elif isinstance(step, DeriveStep):
        for name, source in step.fields.items():  # in order: a later one may read an earlier one
            fields[name] = _computed(
                spec, record, source, f"derive `{source.strip()}`", (*at, "fields", name)
            )
    elif isinstance(step, EnrichStep):
        how = f"enrich (table `{step.table}`)"
        rows, rest = table_rows(spec, schema, step.table, how, at, record.topic_pii)
        if step.fields is not None:
            for name in step.fields:
                info = rows.get(name) if rows is not None else None
                if info is None:
                    info = read_field(rest.topic, name, step.table, how, at, record.topic_pii)
                fields[step.prefix + name] = info
        elif rows is not None:
            fields.update({step.prefix + k: v for k, v in rows.items()})
        elif not step.prefix:
            record.rest = (*record.rest, rest)
    elif isinstance(step, JoinStep):
        _join(spec, schema, record, step, at)
    elif isinstance(step, AggregateStep):
        fields.update(_results(record, step, at, f"aggregate (table `{step.table}`)"))
    elif isinstance(step, WindowStep):
        key = record.get(step.key) or FieldInfo(frozenset(), "window", at)
        made = FieldInfo(frozenset(), "window", at)
        record = Record(
            {
                step.key: replace_how(key, f"window key (table `{step.table}`)", at),
                "window_start": made,
                "window_end": made,
                **_results(record, step, at, f"window (table `{step.table}`)"),
            },
            (),
            record.topic_pii,
        )
    elif isinstance(step, ScoreStep):
        sources = [r.when for r in step.rules] + list(step.logistic.coefficients if step.logistic else [])
        infos = [_computed(spec, record, s, "", at) for s in sources]
        score = combine(infos, "score", at, "TRANSFORMATION")
        # a number and the names of the rules that fired: no PII whatever the rules read
        fields[step.as_] = FieldInfo(score.origins, "score", (*at, "as"))
        fields[step.reasons] = FieldInfo(score.origins, "score (rules that fired)", (*at, "reasons"))
    elif isinstance(step, ModelStep):
        infos = [_computed(spec, record, s, "", at) for s in step.features().values()]
        result = combine(infos, "model", at, "TRANSFORMATION")
        fields[step.output] = FieldInfo(result.origins, f"model `{step.file}`", (*at, "output"))
    elif isinstance(step, MaskStep):
        for name, how in step.fields.items():
            info = record.get(name)
            if how == "drop":
                fields.pop(name, None)
                record.gone = record.gone | {name}
            elif info is not None:
                fields[name] = _hashed(info, (*at, "fields", name))
    elif isinstance(step, PythonStep) and not record.rest:
        # opaque: what it received is assumed to pass through; what it adds comes from it
        record.rest = (Rest(None, None, f"python `{step.function}`", at),)
    return record


def replace_how(info: FieldInfo, how: str, at: PathTuple) -> FieldInfo:
    return FieldInfo(info.origins, how, at, info.pii, info.pii_from)


def _hashed(info: FieldInfo, at: PathTuple) -> FieldInfo:
    origins = frozenset(Origin(o.topic, o.field, o.table, "TRANSFORMATION", True) for o in info.origins)
    pii: Level | None = "indirect" if info.pii is not None else None  # a keyed digest is a pseudonym
    return FieldInfo(origins, "mask hash", at, pii, info.pii_from)


def _results(
    record: Record, step: AggregateStep | WindowStep, at: PathTuple, how: str
) -> dict[str, FieldInfo]:
    out = {}
    for name, (function, read) in step.results().items():
        info = record.get(read) if read else None
        if info is None:
            out[name] = FieldInfo(frozenset(), f"{how}: {function}", at)
            continue
        origins = frozenset(Origin(o.topic, o.field, o.table, "AGGREGATION", o.masking) for o in info.origins)
        keeps = function in _VALUE_FUNCTIONS
        out[name] = FieldInfo(
            origins,
            f"{how}: {function}({read})",
            at,
            info.pii if keeps else None,
            info.pii_from if keeps else "",
        )
    return out


def _join(spec: TopologySpec, schema: SchemaLookup, record: Record, step: JoinStep, at: PathTuple) -> None:
    other = input_record(spec, schema, step.topic, record.topic_pii)
    how = f"join (topic `{step.topic}`)"
    names = step.fields if step.fields is not None else list(other.fields)
    for name in names:
        info = other.get(name)
        if info is not None:
            record.fields[step.prefix + name] = replace_how(info, how, at)
    if step.fields is None and other.rest and not step.prefix:
        record.rest = (*record.rest, Rest(step.topic, None, how, at))
    record.fields[step.status_as] = FieldInfo(frozenset(), "join status", (*at, "status_as"))
