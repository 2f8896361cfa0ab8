"""The data-flow graph and its Mermaid / DOT drawings."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from stream_orch.cli.main import main
from stream_orch.topology.graph import (
    build_graph,
    dlq_topic,
    find_cycles,
    retry_topics,
    to_dot,
    to_mermaid,
    topics_of,
)
from stream_orch.topology.loader import load_topology, parse_topology

ROOT = Path(__file__).resolve().parents[2]
GOOD = ROOT / "tests" / "fixtures" / "topologies" / "good.yaml"

# Names follow the name rules (no quotes or brackets since issue 19); the labels that can hold
# any character are route conditions (string literals) and the graph's name.
TRICKY = """\
topology: tricky
topics:
  in.quoted: {}
  out_back: {}
  a-b.c: {}
nodes:
  n.1:
    input: in.quoted
    routes:
      - when: "x > 1 and y != \\"a|b\\" and z < 2 and w != 'a<b>&c\\\\d'"
        to: out_back
      - otherwise: true
        to: a-b.c
    errors: {retry: {delays: [1s, 90s]}}
"""


def test_graph_has_topics_nodes_tables_and_implied_edges() -> None:
    spec = load_topology(GOOD).spec
    graph = build_graph(spec)
    assert graph.nodes == ["check"]
    assert graph.tables == ["profile_table", "seen", "velocity"]
    assert graph.topics["payments"] is True
    assert graph.topics["payments.retry.1"] is False  # implied
    assert topics_of(graph, ["retry"]) == {"payments.retry.1", "payments.retry.2"}
    assert topics_of(graph, ["dlq"]) == {"payments.dlq"}
    kinds = {(e.src, e.dst, e.kind) for e in graph.edges}
    assert ("topic:profiles", "table:profile_table", "feed") in kinds
    assert ("table:profile_table", "node:check", "lookup") in kinds
    assert ("node:check", "table:seen", "write") in kinds
    assert ("topic:payments.retry.2", "node:check", "retry") in kinds
    labels = {e.label for e in graph.edges if e.kind == "route"}
    assert labels == {"route 1: risk >= 0.5", "route 2: otherwise"}  # numbered from 1, as lint does


def test_retry_and_dlq_names() -> None:
    spec = load_topology(GOOD).spec
    node = spec.nodes["check"]
    assert retry_topics(node) == ["payments.retry.1", "payments.retry.2"]
    assert dlq_topic(node) == "payments.dlq"
    tricky = parse_topology(TRICKY).spec.nodes["n.1"]
    assert dlq_topic(tricky) == "in.quoted.dlq"


def test_no_cycles_in_good_topology() -> None:
    assert find_cycles(load_topology(GOOD).spec) == []


def test_mermaid_shapes_and_escaping() -> None:
    text = to_mermaid(build_graph(parse_topology(TRICKY).spec))
    assert text.startswith("flowchart LR\n")
    assert '[("in.quoted")]' in text  # topic: cylinder
    assert '("n.1")' in text  # node: rounded
    assert '-->|"route 1: x #gt; 1 and y != #quot;a|b#quot; and z #lt; 2 and w != ' in text
    assert "-.->" in text and "linkStyle" in text and "#dd3333" in text  # retry/DLQ dashed red
    assert "'a#lt;b#gt;#amp;c" in text


def test_dot_escaping() -> None:
    graph = build_graph(parse_topology(TRICKY).spec)
    graph.name = 'we"ird'
    text = to_dot(graph)
    assert text.startswith('digraph "we\\"ird" {')
    assert 'label="route 1: x > 1 and y != \\"a|b\\" and z < 2 and w != \'a<b>&c\\\\d\'"' in text
    assert 'style="dashed", color="#dd3333"' in text
    assert 'label="after 90s"' in text


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
@pytest.mark.parametrize("source", ["good", "tricky", "reference"])
def test_dot_is_accepted_by_graphviz(source: str) -> None:
    if source == "good":
        spec = load_topology(GOOD).spec
    elif source == "tricky":
        spec = parse_topology(TRICKY).spec
    else:
        path = ROOT / "topologies" / "fraud_detection.yaml"
        if not path.exists():
            pytest.skip("the reference topology is not written yet")
        spec = load_topology(path).spec
    result = subprocess.run(
        ["dot", "-Tsvg"], input=to_dot(build_graph(spec)), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no warnings (unknown colors, bad attributes)
    assert "<svg" in result.stdout


def test_graph_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(GOOD), "--format", "dot"]) == 0
    assert capsys.readouterr().out.startswith('digraph "payments" {')
    assert main(["graph", str(GOOD)]) == 0
    assert capsys.readouterr().out.startswith("flowchart LR")


def test_graph_command_bad_topology(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("topology: [\n")
    assert main(["graph", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:") and "YAML syntax error" in err


def test_a_join_draws_the_joined_topic_into_the_node_and_the_node_into_its_table() -> None:
    graph = build_graph(load_topology(ROOT / "topologies" / "reconciliation.yaml").spec)
    edges = {(e.src, e.dst, e.kind, e.label) for e in graph.edges}
    assert ("topic:settlements", "node:reconcile", "join", "join interval on payment_id") in edges
    assert ("node:reconcile", "table:awaiting_settlement", "write", "join") in edges
    assert ("topic:payments", "node:reconcile", "input", "") in edges
    assert '-->|"join interval on payment_id"|' in to_mermaid(graph)
