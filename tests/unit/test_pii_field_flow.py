"""The field flow (topology/field_flow.py): for each step kind, where an output field comes from
and which PII it carries; and the table inspection's mask reading the schemas' `"pii"`."""

from __future__ import annotations

from typing import Any

import pytest

from stream_orch.runtime.inspect import MASKED, PiiMask
from stream_orch.topology.field_flow import FieldInfo, Origin, Output, field_flows
from stream_orch.topology.models import TopologySpec

SCHEMAS: dict[str, dict[str, Any]] = {
    "person": {
        "type": "record",
        "name": "Person",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "email", "type": "string", "pii": "direct"},
            {"name": "zip", "type": "string", "pii": "indirect"},
            {"name": "amount", "type": "double"},
            {"name": "ts", "type": "long"},
        ],
    },
    "profile": {
        "type": "record",
        "name": "Profile",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "phone", "type": "string", "pii": "direct"},
            {"name": "tier", "type": "string"},
        ],
    },
}


def _spec(steps: list[dict[str, Any]], route: dict[str, Any] | None = None, **extra: Any) -> TopologySpec:
    return TopologySpec.model_validate(
        {
            "topology": "t",
            "topics": {
                "people": {"key": "id", "schema": "person"},
                "profiles": {"key": "id", "schema": "profile"},
                "out": {"key": "id"},
                **extra.get("topics", {}),
            },
            "tables": {"profile_t": {"topic": "profiles", "global": True}, "state": {}},
            "nodes": {"n": {"input": "people", "steps": steps, "routes": [route or {"to": "out"}]}},
        }
    )


def output(steps: list[dict[str, Any]], route: dict[str, Any] | None = None, **extra: Any) -> Output:
    flows = field_flows([(_spec(steps, route, **extra), SCHEMAS.get)])
    (node,) = flows.nodes
    return node.outputs[0]


def origins(info: FieldInfo) -> set[tuple[str, str, str | None, str, bool]]:
    return {(o.topic, o.field, o.table, o.subtype, o.masking) for o in info.origins}


def test_input_fields_pass_as_identity_with_their_schema_pii() -> None:
    out = output([])
    assert set(out.fields) == {"id", "email", "zip", "amount", "ts"}
    assert not out.projected  # `out` has no schema: every field goes
    assert origins(out.fields["email"]) == {("people", "email", None, "IDENTITY", False)}
    assert (out.fields["email"].pii, out.fields["zip"].pii, out.fields["amount"].pii) == (
        "direct",
        "indirect",
        None,
    )


def test_normalize_transforms_and_a_default_adds_a_field() -> None:
    out = output([{"step": "normalize", "fields": {"email": {"case": "lower"}, "extra": {"default": 0}}}])
    assert origins(out.fields["email"]) == {("people", "email", None, "TRANSFORMATION", False)}
    assert out.fields["email"].pii == "direct" and out.fields["email"].how == "normalize"
    assert out.fields["extra"].origins == frozenset() and out.fields["extra"].pii is None


def test_derive_reads_fields_in_order_and_keeps_the_highest_pii() -> None:
    out = output(
        [{"step": "derive", "fields": {"a": "zip + '-' + str(amount)", "b": "a + email", "c": "amount"}}]
    )
    assert origins(out.fields["a"]) == {
        ("people", "zip", None, "TRANSFORMATION", False),
        ("people", "amount", None, "TRANSFORMATION", False),
    }
    assert out.fields["a"].pii == "indirect"
    assert out.fields["b"].pii == "direct" and out.fields["b"].pii_from == "`people`.`email`"
    assert origins(out.fields["c"]) == {("people", "amount", None, "IDENTITY", False)}  # a copy


def test_enrich_copies_table_fields_with_their_topic_pii_and_prefix() -> None:
    out = output([{"step": "enrich", "table": "profile_t", "key": "id", "fields": ["phone"], "prefix": "p_"}])
    assert origins(out.fields["p_phone"]) == {("profiles", "phone", "profile_t", "IDENTITY", False)}
    assert out.fields["p_phone"].pii == "direct"
    every = output([{"step": "enrich", "table": "profile_t", "key": "id"}])
    assert {"phone", "tier"} <= set(every.fields)


def test_mask_hash_makes_direct_indirect_and_drop_removes() -> None:
    out = output([{"step": "mask", "fields": {"email": "hash", "zip": "drop"}}])
    assert "zip" not in out.fields
    assert out.fields["email"].pii == "indirect"
    assert origins(out.fields["email"]) == {("people", "email", None, "TRANSFORMATION", True)}


def test_score_and_model_results_carry_no_pii_but_name_their_inputs() -> None:
    score = {"step": "score", "rules": [{"name": "r", "when": "email == 'x'", "weight": 1}]}
    out = output([score])
    assert out.fields["score"].pii is None and out.fields["reasons"].pii is None
    assert ("people", "email", None, "TRANSFORMATION", False) in origins(out.fields["score"])


@pytest.mark.parametrize(("function", "pii"), [("count", None), ("count_distinct", None), ("last", "direct")])
def test_window_results_replace_the_record(function: str, pii: str | None) -> None:
    window = {"step": "window", "table": "state", "key": "id", "kind": "tumbling", "size": "1m", "as": "r"}
    window |= {"function": function, "field": "email"} if function != "count" else {}
    out = output([window])
    assert set(out.fields) == {"id", "window_start", "window_end", "r"}
    assert out.fields["r"].pii == pii
    if function != "count":
        assert origins(out.fields["r"]) == {("people", "email", None, "AGGREGATION", False)}


def test_sliding_aggregate_adds_its_result() -> None:
    out = output(
        [
            {
                "step": "aggregate",
                "table": "state",
                "key": "id",
                "window": "1m",
                "function": "sum",
                "field": "amount",
                "as": "s",
            }
        ]
    )
    assert origins(out.fields["s"]) == {("people", "amount", None, "AGGREGATION", False)}
    assert "email" in out.fields


def test_join_copies_the_other_topics_fields() -> None:
    join = {"step": "join", "topic": "profiles", "table": "state", "key": "id", "fields": ["phone"]}
    out = output([join])
    assert origins(out.fields["phone"]) == {("profiles", "phone", None, "IDENTITY", False)}
    assert out.fields["phone"].pii == "direct"
    assert out.fields["join_status"].origins == frozenset()


def test_a_python_step_passes_what_it_receives_and_adds_unknown_fields() -> None:
    out = output(
        [{"step": "python", "function": "m:f"}],
        {"to": [{"topic": "rep"}]},
        topics={"rep": {"schema": "profile"}},
    )
    # projected onto `profile`: `id` from the input, `phone` and `tier` from the python step
    assert out.projected
    assert origins(out.fields["id"]) == {("people", "id", None, "IDENTITY", False)}
    assert out.fields["phone"].origins == frozenset() and out.fields["phone"].how == "python `m:f`"


def test_route_set_and_projection() -> None:
    route = {"to": [{"topic": "rep", "set": {"tier": "upper(email)"}}]}
    out = output([], route, topics={"rep": {"schema": "profile"}})
    assert set(out.fields) == {"id", "tier"}  # the schema's fields the record has (no phone)
    assert out.fields["tier"].pii == "direct" and out.fields["tier"].at[-2:] == ("set", "tier")


def test_a_topic_written_by_one_node_carries_its_pii_to_the_next() -> None:
    spec = TopologySpec.model_validate(
        {
            "topology": "t",
            "topics": {"people": {"schema": "person"}, "mid": {}, "end": {}},
            "nodes": {
                "b": {"input": "mid", "routes": [{"to": "end"}]},
                "a": {
                    "input": "people",
                    "steps": [{"step": "mask", "fields": {"zip": "drop"}}],
                    "routes": [{"to": "mid"}],
                },
            },
        }
    )
    flows = field_flows([(spec, SCHEMAS.get)])
    assert flows.carried["mid"] == {"email": "direct"}
    (b,) = [n for n in flows.nodes if n.node == "b"]
    assert b.outputs[0].fields["email"].origins == frozenset({Origin("mid", "email")})
    assert "zip" not in b.outputs[0].fields


def test_table_inspection_masks_the_fields_schemas_declare_pii() -> None:
    spec = _spec([])  # no mask step at all
    value = {"id": "p-1", "email": "ann@example.com", "zip": "10115", "amount": 5.0}
    assert PiiMask.of(spec).apply("profile_t", value) == value
    masked = PiiMask.of(spec, SCHEMAS.get).apply("profile_t", value)
    assert masked == {"id": "p-1", "email": MASKED, "zip": MASKED, "amount": 5.0}


@pytest.mark.parametrize("fmt", ["avro", "json"])
def test_codecs_ignore_the_pii_attribute(fmt: str) -> None:
    """`"pii"` is an extra attribute of an Avro field (legal in Avro): the shipped customer schema
    carries it, and both codecs write and read its records as before."""
    from pathlib import Path

    from stream_orch.codecs import codec_for
    from stream_orch.codecs.schemas import SchemaRegistry
    from stream_orch.topology.models import TopicSpec

    registry = SchemaRegistry(Path(__file__).resolve().parents[2] / "schemas")
    assert {f["name"]: f.get("pii") for f in registry.fields("customer")}["email"] == "direct"
    codec = codec_for(TopicSpec(schema="customer", format=fmt), registry)
    record = {
        "customer_id": "C-000001",
        "name": "Ann",
        "email": "ann@example.com",
        "home_country": "DE",
        "risk_tier": "low",
        "avg_amount": 10.0,
    }
    assert codec.decode(codec.encode(record)) == record


def test_filter_and_route_conditions_per_target() -> None:
    spec = TopologySpec.model_validate(
        {
            "topology": "t",
            "topics": {"people": {"schema": "person"}, "a": {}, "b": {}, "c": {}, "all": {}},
            "nodes": {
                "n": {
                    "input": "people",
                    "steps": [{"step": "filter", "when": "ts > 0"}],
                    "routes": [
                        {"to": "all"},
                        {"when": "amount > 10", "to": "a"},
                        {"when": "zip == '1'", "to": "b"},
                        {"otherwise": True, "to": "c"},
                    ],
                }
            },
        }
    )
    (node,) = field_flows([(spec, SCHEMAS.get)]).nodes
    deciding = {out.topic: sorted(o.field for o in out.conditions) for out in node.outputs}
    assert deciding == {
        "all": ["ts"],
        "a": ["amount", "ts"],
        "b": ["amount", "ts", "zip"],  # b's rule fires only when a's did not
        "c": ["amount", "ts", "zip"],
    }


def test_validate_dedupe_filter_and_repartition_leave_fields_as_they_are() -> None:
    steps = [
        {"step": "validate"},
        {"step": "dedupe", "field": "id", "table": "state", "horizon": "1h"},
        {"step": "filter", "when": "amount > 0"},
        {"step": "repartition", "by": "zip"},
    ]
    assert output(steps).fields == output([]).fields


def test_a_scheduled_node_reads_the_rows_it_scans_and_the_tick() -> None:
    spec = TopologySpec.model_validate(
        {
            "topology": "t",
            "topics": {"profiles": {"key": "id", "schema": "profile", "compact": True}, "out": {}},
            "tables": {"profile_t": {"topic": "profiles", "global": True}},
            "nodes": {
                "tick": {
                    "schedule": {"every": "1m", "scan": [{"table": "profile_t"}]},
                    "routes": [{"to": "out"}],
                }
            },
        }
    )
    (node,) = field_flows([(spec, SCHEMAS.get)]).nodes
    assert node.reads == ("profiles",)
    out = node.outputs[0]
    assert origins(out.fields["phone"]) == {("profiles", "phone", "profile_t", "IDENTITY", False)}
    assert out.fields["phone"].pii == "direct"
    assert out.fields["tick_time"].origins == frozenset()


def test_a_field_not_in_a_schema_resolves_through_the_rest() -> None:
    # `out` has no schema; its reader sees any field, with the PII its writer sends
    spec = TopologySpec.model_validate(
        {
            "topology": "t",
            "topics": {"people": {"schema": "person"}, "out": {}, "end": {}},
            "nodes": {
                "w": {"input": "people", "routes": [{"to": "out"}]},
                "r": {
                    "input": "out",
                    "steps": [{"step": "derive", "fields": {"x": "email + other"}}],
                    "routes": [{"to": "end"}],
                },
            },
        }
    )
    flows = field_flows([(spec, SCHEMAS.get)])
    (r,) = [n for n in flows.nodes if n.node == "r"]
    x = r.outputs[0].fields["x"]
    assert {(o.topic, o.field) for o in x.origins} == {("out", "email"), ("out", "other")}
    assert x.pii == "direct" and x.pii_from == "`out`.`email`"


def test_where_the_record_key_comes_from() -> None:
    def key_of(out: Output) -> tuple[set[tuple[str, str]], str | None]:
        assert out.key is not None
        return {(o.topic, o.field) for o in out.key.origins}, out.key.pii

    def unkeyed(steps: list[dict[str, Any]]) -> Output:
        return output(steps, {"to": "raw"}, topics={"raw": {}})  # no key field: the record's key

    assert key_of(unkeyed([])) == ({("people", "id")}, None)  # the input's key
    assert key_of(unkeyed([{"step": "repartition", "by": "zip"}])) == ({("people", "zip")}, "indirect")
    window = {"step": "window", "table": "state", "key": "email", "kind": "tumbling", "size": "1m", "as": "n"}
    assert key_of(unkeyed([{"step": "repartition", "by": "email"}, window])) == (
        {("people", "email")},
        "direct",
    )
    keyed = output([], {"to": [{"topic": "raw", "key": "k", "set": {"k": "zip"}}]}, topics={"raw": {}})
    assert key_of(keyed) == ({("people", "zip")}, "indirect")  # the key field as `set` left it
    assert key_of(output([])) == ({("people", "id")}, None)  # `out` is keyed by `id`


def test_pii_follows_a_chain_of_nodes_declared_in_any_order() -> None:
    hops = 6
    topics = {"people": {"schema": "person"}, **{f"t{i}": {} for i in range(1, hops + 1)}}
    nodes = {
        f"n{i}": {"input": f"t{i - 1}" if i > 1 else "people", "routes": [{"to": f"t{i}"}]}
        for i in range(1, hops + 1)
    }
    reversed_nodes = dict(reversed(list(nodes.items())))
    for declared in (nodes, reversed_nodes):
        spec = TopologySpec.model_validate({"topology": "t", "topics": topics, "nodes": declared})
        flows = field_flows([(spec, SCHEMAS.get)])
        assert flows.carried[f"t{hops}"] == {"email": "direct", "zip": "indirect"}
        (last,) = [n for n in flows.nodes if n.node == f"n{hops}"]
        assert last.outputs[0].fields["email"].pii_from == f"`t{hops - 1}`.`email`"


def test_the_pii_field_names_of_the_fraud_topology_from_its_schemas() -> None:
    from pathlib import Path

    from stream_orch.codecs.schemas import SchemaRegistry
    from stream_orch.topology.field_flow import pii_field_names
    from stream_orch.topology.loader import load_topology

    root = Path(__file__).resolve().parents[2]
    registry = SchemaRegistry(root / "schemas")
    assert registry.raw_or_none("no_such_schema") is None
    spec = load_topology(root / "topologies" / "fraud_detection.yaml").spec
    assert pii_field_names(spec, registry.raw_or_none) == {"name", "email"}
