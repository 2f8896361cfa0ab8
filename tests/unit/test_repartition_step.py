"""The `repartition: {by: F}` step (issue 20): a node is split into two at it (the part after it
reads the internal topic `<topology>.<node>.repartition`, keyed by F); lint checks F and the steps
after it against that topic; `graph` draws it; and in the driver a window keyed by F after it
equals a brute-force count, with failures after it in the node's DLQ."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from step_harness import SCHEMAS
from test_source_watermarks import PARTS, T0, M, flush, scans

from stream_orch.testing import TopologyTestDriver
from stream_orch.topology.graph import build_graph, to_mermaid
from stream_orch.topology.lint import lint
from stream_orch.topology.loader import parse_topology
from stream_orch.topology.models import FilterStep, RouteSpec, TopologySpec, WindowStep
from stream_orch.topology.repartition import expand, node_parts

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_SCHEMAS = ROOT / "tests" / "fixtures" / "schemas"
INTERNAL = "rekey.per_hub.repartition"
AFTER = "per_hub.after_repartition"


def doc(watermarks: str = "per_source", partitions: int | None = None) -> dict[str, Any]:
    repartition: dict[str, Any] = {"step": "repartition", "by": "hub"}
    if partitions is not None:
        repartition["partitions"] = partitions
    return {
        "topology": "rekey",
        "topics": {
            "scans": {"partitions": PARTS, "key": "id"},
            "hub.counts": {"partitions": PARTS, "key": "hub"},
            "scans.dlq": {"partitions": 1},
        },
        "tables": {"per_hub": {}},
        "nodes": {
            "per_hub": {
                "input": "scans",
                "watermarks": watermarks,
                "batch_size": 40,
                "steps": [
                    {"step": "filter", "when": "hub != 'noise'"},
                    repartition,
                    {
                        "step": "window",
                        "table": "per_hub",
                        "key": "hub",
                        "kind": "tumbling",
                        "size": "1m",
                        "as": "n",
                        "late": "dlq",
                    },
                ],
                "routes": [{"to": "hub.counts"}],
                "errors": {"dlq": "scans.dlq"},
            }
        },
    }


def spec(**kw: Any) -> TopologySpec:
    return TopologySpec.model_validate(doc(**kw))


# ---------------------------------------------------------------------------- the split


def test_a_node_with_a_repartition_step_runs_as_two_nodes_joined_by_the_internal_topic() -> None:
    written = spec()
    expanded = expand(written)
    assert list(expanded.nodes) == ["per_hub", AFTER]
    before, after = expanded.nodes["per_hub"], expanded.nodes[AFTER]
    assert before.input == "scans" and [type(s) for s in before.steps] == [FilterStep]
    assert before.routes == [RouteSpec(to=[INTERNAL])] and before.errors == written.nodes["per_hub"].errors
    assert after.input == INTERNAL and [type(s) for s in after.steps] == [WindowStep]
    assert after.routes == written.nodes["per_hub"].routes
    assert after.errors is not None and after.errors.dlq == "scans.dlq"  # the node's DLQ
    assert after.watermarks == "per_source" and after.batch_size == 40
    topic = expanded.topics[INTERNAL]
    assert (topic.partitions, topic.key, topic.schema_, topic.format) == (PARTS, "hub", None, "json")
    assert node_parts(written, "per_hub") == ["per_hub", AFTER]
    assert written.nodes["per_hub"].input == "scans" and INTERNAL not in written.topics  # untouched


def test_the_internal_topic_takes_the_partitions_given_and_a_default_dlq_keeps_its_name() -> None:
    d = doc(partitions=5)
    del d["nodes"]["per_hub"]["errors"]
    expanded = expand(TopologySpec.model_validate(d))
    assert expanded.topics[INTERNAL].partitions == 5
    assert expanded.nodes["per_hub"].errors is None  # default: scans.dlq
    after = expanded.nodes[AFTER].errors
    assert after is not None and after.dlq == "scans.dlq" and after.retry is None


def test_a_topology_without_repartition_is_left_as_it_is() -> None:
    d = doc()
    del d["nodes"]["per_hub"]["steps"][1]
    written = TopologySpec.model_validate(d)
    assert expand(written) is written and node_parts(written, "per_hub") == ["per_hub"]


def test_the_graph_draws_the_internal_topic_between_the_two_parts() -> None:
    graph = build_graph(spec())
    edges = {(e.src, e.dst, e.kind, e.label) for e in graph.edges}
    assert ("node:per_hub", f"topic:{INTERNAL}", "route", "repartition by hub") in edges
    assert (f"topic:{INTERNAL}", f"node:{AFTER}", "input", "") in edges
    assert INTERNAL in to_mermaid(graph)


def test_two_repartitions_make_three_parts() -> None:
    d = doc()
    steps = d["nodes"]["per_hub"]["steps"]
    steps.insert(0, {"step": "repartition", "by": "id", "partitions": 2})
    expanded = expand(TopologySpec.model_validate(d))
    assert list(expanded.nodes) == ["per_hub", AFTER, f"{AFTER}_2"]
    assert [n.input for n in expanded.nodes.values()] == ["scans", INTERNAL, f"{INTERNAL}_2"]
    assert expanded.topics[INTERNAL].partitions == 2 and expanded.topics[f"{INTERNAL}_2"].partitions == 2
    assert [len(n.steps) for n in expanded.nodes.values()] == [0, 1, 1]
    assert node_parts(TopologySpec.model_validate(d), "per_hub") == list(expanded.nodes)


# ---------------------------------------------------------------------------- lint

YAML = """\
topology: parcels
topics:
  scans: {partitions: 3, key: parcel_id, schema: scan}
  hub.counts: {partitions: 3, key: hub}
tables:
  per_hub: {}
nodes:
  per_hub:
    input: scans
    steps:
      - step: repartition
        by: hub
      - {step: window, table: per_hub, key: hub, kind: tumbling, size: 1m, as: n}
    routes: [{to: hub.counts}]
    errors: {dlq: scans.dlq}
"""


def errors(text: str) -> list[tuple[int, str, str]]:
    loaded = parse_topology(text, ROOT / "inline.yaml", env={})
    return [(p.line, p.message, p.hint) for p in lint(loaded, FIXTURE_SCHEMAS) if p.severity == "error"]


def test_a_window_keyed_by_the_repartition_field_lints_clean() -> None:
    assert errors(YAML) == []


def test_without_the_repartition_the_window_is_not_co_partitioned() -> None:
    found = errors(YAML.replace("      - step: repartition\n        by: hub\n", ""))
    assert [m for _, m, _ in found] == [
        "node `per_hub`, step window: table `per_hub` is used by key `hub` but input topic `scans` is keyed "
        "by `parcel_id` (not co-partitioned)"
    ]


def test_the_field_must_exist_where_the_step_is() -> None:
    (line, message, hint), *_ = errors(YAML.replace("by: hub", "by: hubb"))
    assert line == 12 and message == "node `per_hub`, step repartition: unknown field `hubb`"
    assert "`hub`" in hint


def test_steps_after_it_are_checked_against_the_new_key() -> None:
    found = errors(YAML.replace("key: hub, kind", "key: parcel_id, kind"))
    assert [m for _, m, _ in found] == [
        "node `per_hub`, step window: table `per_hub` is used by key `parcel_id` but input topic "
        "`parcels.per_hub.repartition` is keyed by `hub` (not co-partitioned)"
    ]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "  per_hub.after_repartition: {input: hub.counts, errors: {dlq: x.dlq}}\n",
            "the part after it runs as node `per_hub.after_repartition`, which the topology already has",
        ),
        ("", "its internal topic `parcels.per_hub.repartition` is declared under `topics:`"),
    ],
)
def test_names_the_split_would_give_must_be_free(extra: str, expected: str) -> None:
    text = YAML + extra
    if not extra:
        declared = "topics:\n  parcels.per_hub.repartition: {partitions: 3, key: hub}\n"
        text = text.replace("topics:\n", declared)
    found = errors(text)
    assert any(line == (11 if extra else 12) and expected in m for line, m, _ in found), found


# ---------------------------------------------------------------------------- the driver


@pytest.mark.parametrize("watermarks", ["per_source", "per_partition"])
def test_a_window_after_a_repartition_equals_a_brute_force_count(watermarks: str) -> None:
    records = scans(1500, seed=21)
    noise = [{**r, "hub": "noise", "i": -2} for r in records[::7]]  # filtered before the repartition
    expected = Counter((r["hub"], r["ts"] - r["ts"] % M) for r in records)
    with TopologyTestDriver(spec(watermarks=watermarks), schemas=SCHEMAS, start_ms=T0) as d:
        d.pipe_many("scans", sorted(records + noise, key=lambda r: r["ts"]) + flush())
        got = {(r.value["hub"], r.value["window_start"]): r.value["n"] for r in d.records("hub.counts")}
        late = [r for r in d.dead_letters() if (r.reason or "").startswith("late_event")]
        internal = d.records(INTERNAL)
    assert all(r.key == r.value["hub"] for r in internal if r.value is not None)
    if watermarks == "per_source":
        assert late == []
        assert got == dict(expected)
    else:  # the same topology without the per-source rule: the mechanism, not luck, keeps them
        assert len(late) > 50


def test_a_record_failing_after_the_repartition_goes_to_the_nodes_dlq() -> None:
    d = doc()
    window = d["nodes"]["per_hub"]["steps"][2]
    del window["as"]
    window["aggregate"] = {"total": {"sum": "kg"}}
    records = [{"id": f"P-{i}", "hub": "H1", "ts": T0 + i, "kg": 1 if i % 3 else "heavy"} for i in range(30)]
    with TopologyTestDriver(TopologySpec.model_validate(d), schemas=SCHEMAS, start_ms=T0) as drv:
        drv.pipe_many("scans", records + [{**r, "kg": 0} for r in flush()])
        dead = drv.dead_letters("per_hub.after_repartition")
        totals = sum(r.value["total"] for r in drv.records("hub.counts") if r.value["hub"] == "H1")
        in_dlq = drv.records("scans.dlq")
    assert len(dead) == 10 and len(in_dlq) == 10
    assert totals == 20
