"""One route numbering for lint, graph and metrics (from 1), and an explicit `errors.dlq` drawn
as such, not as implied (issue 12, item 5)."""

from __future__ import annotations

import shutil
from pathlib import Path

from stream_orch.topology.graph import build_graph, route_label, to_dot, to_mermaid
from stream_orch.topology.lint import lint
from stream_orch.topology.loader import load_topology, parse_topology
from tests.unit.test_runtime_routing import event, route, scored

REPO = Path(__file__).resolve().parents[2]
FRAUD = load_topology(REPO / "topologies" / "fraud_detection.yaml").spec


def test_the_metric_label_graph_and_lint_give_a_route_the_same_number(tmp_path: Path) -> None:
    routes = FRAUD.nodes["score_transactions"].routes
    assert [route_label(i, r) for i, r in enumerate(routes)] == [
        "1:always", "2:score >= 0.8", "3:score >= 0.5", "4:otherwise",
    ]  # fmt: skip
    _, _, stats, _ = route(event(scored(0.9)))
    assert set(stats.outputs) == {
        ("1:always", "transactions.enriched"),
        ("2:score >= 0.8", "fraud.alerts"),
        ("2:score >= 0.8", "account.actions"),
    }
    edges = {e.label for e in build_graph(FRAUD).edges if e.kind == "route"}
    assert edges == {"route 1", "route 2: score >= 0.8", "route 3: score >= 0.5", "route 4: otherwise"}
    broken = tmp_path / "t.yaml"
    shutil.copytree(REPO / "topologies" / "models", tmp_path / "models")  # the copy's model file
    broken.write_text((REPO / "topologies" / "fraud_detection.yaml").read_text().replace(
        "when: score >= 0.5", "when: scor >= 0.5"))  # fmt: skip
    (problem,) = lint(load_topology(broken), REPO / "schemas")
    assert "node `score_transactions`, route 3: unknown field `scor`" in problem.message


def test_an_explicit_dlq_is_drawn_as_named_by_errors_dlq() -> None:
    graph = build_graph(FRAUD)
    mermaid = to_mermaid(graph)
    assert '[("transactions.dlq (errors.dlq)")]' in mermaid
    assert '[("transactions.retry.1 (implied)")]' in mermaid
    assert "transactions.dlq (implied)" not in mermaid
    assert 'label="transactions.dlq (errors.dlq)"' in to_dot(graph)
    implied = parse_topology(
        "topology: t\ntopics: {a: {}, b: {}}\nnodes:\n  n: {input: a, routes: [{to: b}], errors: {}}\n"
    ).spec
    assert '[("a.dlq (implied)")]' in to_mermaid(build_graph(implied))
