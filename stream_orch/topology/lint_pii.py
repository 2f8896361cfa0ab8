"""Lint of the PII policy: no personal data reaches a topic whose `pii` policy (or `audience`)
refuses it. The fields are followed by :mod:`stream_orch.topology.field_flow` (through steps,
`set`, enrich lookups, joins and other nodes' topics); the problem is at the route target (or its
`set` field) that sends the field, and names where the field was last set."""

from __future__ import annotations

import json
from collections.abc import Callable

from stream_orch.topology.field_flow import (
    LEVELS,
    FieldInfo,
    Output,
    PathTuple,
    SchemaLookup,
    field_flows,
    schema_fields,
)
from stream_orch.topology.models import TopologySpec
from stream_orch.topology.models_governance import PiiPolicy, pii_policy
from stream_orch.topology.problems import Severity

Add = Callable[[PathTuple, str, str, Severity], None]


def refused(policy: PiiPolicy, info: FieldInfo) -> bool:
    """Whether a field carrying ``info.pii`` may not reach a topic of ``policy``."""
    if info.pii is None or policy == "allowed":
        return False
    return policy == "forbidden" or info.pii == "direct"


def pii_problems(
    spec: TopologySpec, schema: SchemaLookup, add: Add, line_of: Callable[[PathTuple], int]
) -> None:
    """An error per field that reaches a topic whose policy refuses its PII."""
    _declarations(spec, schema, add)
    if not any(pii_policy(t.audience, t.pii) != "allowed" for t in spec.topics.values()):
        return
    for flow in field_flows([(spec, schema)]).nodes:
        for out in flow.outputs:
            topic = spec.topics.get(out.topic)
            if topic is None:
                continue  # reported as an undeclared topic
            policy = pii_policy(topic.audience, topic.pii)
            for name, info in sorted(out.fields.items()):
                if refused(policy, info):
                    _leak(out, name, info, policy, topic.audience, add, line_of)
            if out.key is not None and refused(policy, out.key):
                _key_leak(out, out.key, policy, topic.audience, add)


def _declarations(spec: TopologySpec, schema: SchemaLookup, add: Add) -> None:
    """A `"pii"` attribute other than direct or indirect (a typo would declare nothing)."""
    seen = set()
    for name, topic in spec.topics.items():
        if not topic.schema_ or topic.schema_ in seen:
            continue
        seen.add(topic.schema_)
        for f in schema_fields(schema(topic.schema_)) or []:
            if "pii" in f and f["pii"] not in LEVELS:
                add(
                    ("topics", name, "schema"),
                    f'schema `{topic.schema_}`, field `{f["name"]}`: `"pii": {json.dumps(f["pii"])}` '
                    "is not a PII level",
                    'write `"pii": "direct"` (identifies a person on its own) or `"pii": "indirect"`',
                    "error",
                )


def _rule(policy: PiiPolicy, audience: str | None) -> str:
    return f"pii: {policy}" + (f", audience: {audience}" if audience else "")


def _key_leak(out: Output, info: FieldInfo, policy: PiiPolicy, audience: str | None, add: Add) -> None:
    route = int(out.path[3]) + 1
    masked = "hashed" if any(o.masking for o in info.origins) else "unmasked"
    add(
        out.path,
        f"node `{out.node}`, route {route}: the record key carries {info.pii} PII (from "
        f"{info.pii_from or 'an input field'}) and reaches topic `{out.topic}` ({_rule(policy, audience)}) "
        f"{masked}",
        "key the records by another field (`key:` on the route target or the topic), or hash the key "
        "field with a `mask` step before the routes and name it in `key:`",
        "error",
    )


def _leak(
    out: Output,
    name: str,
    info: FieldInfo,
    policy: PiiPolicy,
    audience: str | None,
    add: Add,
    line_of: Callable[[PathTuple], int],
) -> None:
    route = out.path[3] if len(out.path) > 3 else 0
    where = f"node `{out.node}`, route {int(route) + 1}"
    in_route = info.at[: len(out.path)] == out.path
    path = info.at if in_route else out.path
    masked = "hashed" if any(o.masking for o in info.origins) else "unmasked"
    rule = _rule(policy, audience)
    via = "" if in_route or not info.at else f"; it is set by {info.how} at line {line_of(info.at)}"
    message = (
        f"{where}: field `{name}` carries {info.pii} PII (from {info.pii_from or 'an input field'}) and "
        f"reaches topic `{out.topic}` ({rule}) {masked}{via}"
    )
    if policy == "forbidden":
        hint = f"drop it before the routes (`{{step: mask, fields: {{{name}: drop}}}}`)"
    else:
        hint = f"hash or drop it before the routes (`{{step: mask, fields: {{{name}: hash}}}}`)"
    if out.projected:
        hint += f", or leave `{name}` out of the topic's schema"
    add(path, message, hint, "error")
