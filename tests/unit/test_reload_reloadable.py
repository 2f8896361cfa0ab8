"""reload_problems: which changes of the fraud topology a running worker may take (on copies)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stream_orch.topology.loader import load_topology
from stream_orch.topology.models import TopologySpec
from stream_orch.topology.reloadable import reload_problems

FRAUD = Path(__file__).resolve().parents[2] / "topologies" / "fraud_detection.yaml"
OLD = load_topology(FRAUD).spec
SCORE = 7  # the index of score_transactions' score step


def changed(edit: Callable[[dict[str, Any]], None]) -> TopologySpec:
    doc = OLD.model_dump(mode="json", by_alias=True)
    edit(doc)
    return TopologySpec.model_validate(doc)


def node(doc: dict[str, Any], name: str = "score_transactions") -> dict[str, Any]:
    return doc["nodes"][name]


def test_the_fraud_steps_are_where_the_tests_expect_them() -> None:
    kinds = [s.step for s in OLD.nodes["score_transactions"].steps]
    assert kinds[SCORE] == "score" and kinds[4] == "derive"


def test_an_unchanged_topology_has_no_problems() -> None:
    assert reload_problems(OLD, changed(lambda d: None)) == []


ALLOWED: dict[str, Callable[[dict[str, Any]], None]] = {
    "version": lambda d: d.update(version="2"),
    "description": lambda d: node(d).update(description="new words"),
    "constant value": lambda d: d["constants"]["rates_to_eur"].update(USD=0.95),
    "constant added": lambda d: d["constants"].update(limit=3),
    "score weight": lambda d: node(d)["steps"][SCORE]["rules"][0].update(weight=0.5),
    "score threshold": lambda d: node(d)["steps"][SCORE]["rules"][1].update(when="velocity_60s > 7"),
    "score rule added": lambda d: node(d)["steps"][SCORE]["rules"].append(
        {"name": "tiny", "when": "amount_eur < 1", "weight": 0.05}
    ),
    "score rule removed": lambda d: node(d)["steps"][SCORE]["rules"].pop(),
    "score cap": lambda d: node(d)["steps"][SCORE].update(cap=0.9),
    "derive expression": lambda d: node(d)["steps"][4]["fields"].update(amount_eur="amount * 1.0"),
    "route condition": lambda d: node(d)["routes"][2].update(when="score >= 0.6"),
    "route set value": lambda d: node(d)["routes"][1]["to"][1]["set"].update(action="'hold'"),
}


@pytest.mark.parametrize("edit", ALLOWED.values(), ids=ALLOWED.keys())
def test_a_change_a_worker_can_take_at_a_batch_boundary(edit: Callable[[dict[str, Any]], None]) -> None:
    assert reload_problems(OLD, changed(edit)) == []


def test_a_filter_condition_may_change() -> None:
    def add_filter(d: dict[str, Any]) -> None:
        node(d)["steps"].insert(2, {"step": "filter", "when": "amount > 0"})

    def other_filter(d: dict[str, Any]) -> None:
        add_filter(d)
        node(d)["steps"][2]["when"] = "amount > 1"

    assert reload_problems(changed(add_filter), changed(other_filter)) == []


REFUSED: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "step added": (
        lambda d: node(d)["steps"].insert(3, {"step": "filter", "when": "amount > 0"}),
        "nodes.score_transactions.steps[3]: a step was added",
    ),
    "step removed": (
        lambda d: node(d)["steps"].pop(8),
        "nodes.score_transactions.steps[8]: a step was removed",
    ),
    "steps reordered": (
        lambda d: node(d)["steps"].insert(8, node(d)["steps"].pop(7)),
        "nodes.score_transactions.steps[7]: the step changed from score to mask",
    ),
    "dedupe horizon (state)": (
        lambda d: node(d)["steps"][3].update(horizon="12h"),
        "nodes.score_transactions.steps[3].horizon: changed from",
    ),
    "aggregate window (state)": (
        lambda d: node(d)["steps"][5].update(window="30s"),
        "nodes.score_transactions.steps[5].window: changed",
    ),
    "derive field added (layout)": (
        lambda d: node(d)["steps"][4]["fields"].update(extra="1"),
        "nodes.score_transactions.steps[4].fields.extra: added",
    ),
    "derive field removed (layout)": (
        lambda d: node(d)["steps"][4]["fields"].pop("amount_eur"),
        "nodes.score_transactions.steps[4].fields.amount_eur: removed",
    ),
    "score output field": (
        lambda d: node(d)["steps"][SCORE].update({"as": "risk"}),
        "nodes.score_transactions.steps[7].as: changed",
    ),
    "normalize rule": (
        lambda d: node(d)["steps"][0]["fields"]["amount"].update(gt=1),
        "nodes.score_transactions.steps[0].fields.amount.gt",
    ),
    "enrich table key": (
        lambda d: node(d)["steps"][2].update(key="account_id"),
        "nodes.score_transactions.steps[2].key: changed",
    ),
    "route target topic": (
        lambda d: node(d)["routes"][2].update(to=["transactions.approved"]),
        "nodes.score_transactions.routes[2].to[0]: changed",
    ),
    "route added": (
        lambda d: node(d)["routes"].insert(2, {"when": "score > 0.7", "to": ["fraud.review"]}),
        "nodes.score_transactions.routes[2]: a route was added",
    ),
    "condition on an unconditional route": (
        lambda d: node(d)["routes"][0].update(when="score > 0"),
        "nodes.score_transactions.routes[0].when: changed from None",
    ),
    "route key": (
        lambda d: node(d)["routes"][1]["to"][1].update(key="customer_id"),
        "nodes.score_transactions.routes[1].to[1].key: changed",
    ),
    "topic partitions": (
        lambda d: d["topics"]["transactions"].update(partitions=12),
        "topics.transactions.partitions: changed from 6 to 12",
    ),
    "topic schema": (
        lambda d: d["topics"]["fraud.alerts"].update(schema="transaction"),
        "topics.fraud.alerts.schema: changed",
    ),
    "table added": (lambda d: d["tables"].update(extra={}), "tables.extra: added"),
    "processing guarantee": (
        lambda d: d.update(processing="at_least_once"),
        "processing: changed from 'exactly_once' to 'at_least_once'",
    ),
    "error policy": (
        lambda d: node(d)["errors"]["retry"].update(delays=["1s"]),
        "nodes.score_transactions.errors.retry.delays[1]: an item was removed",
    ),
    "batch size": (lambda d: node(d).update(batch_size=10), "nodes.score_transactions.batch_size: changed"),
    "node added": (
        lambda d: d["nodes"].update(extra={"input": "fraud.alerts", "routes": [{"to": "fraud.review"}]}),
        "nodes.extra: added",
    ),
    "topology name": (lambda d: d.update(topology="other"), "topology: changed"),
}


@pytest.mark.parametrize("case", REFUSED.values(), ids=REFUSED.keys())
def test_a_change_that_needs_a_restart_is_refused_with_its_path(
    case: tuple[Callable[[dict[str, Any]], None], str],
) -> None:
    edit, reason = case
    problems = reload_problems(OLD, changed(edit))
    assert problems and problems[0].startswith(reason), problems
    assert all(p.endswith("(needs a restart)") for p in problems)


def test_every_refused_change_is_listed_and_allowed_ones_are_not() -> None:
    def edits(d: dict[str, Any]) -> None:
        node(d)["steps"][SCORE]["rules"][0]["weight"] = 0.9  # allowed
        d["topics"]["transactions"]["partitions"] = 12
        node(d)["batch_size"] = 10

    problems = reload_problems(OLD, changed(edits))
    assert [p.split(":")[0] for p in problems] == [
        "topics.transactions.partitions",
        "nodes.score_transactions.batch_size",
    ]


def test_a_constant_read_by_a_step_that_keeps_state_is_refused() -> None:
    def read_by_aggregate(d: dict[str, Any]) -> None:
        d["constants"]["fast"] = 5
        node(d)["steps"][5]["when"] = "amount > fast"

    def faster(d: dict[str, Any]) -> None:
        read_by_aggregate(d)
        d["constants"]["fast"] = 6

    problems = reload_problems(changed(read_by_aggregate), changed(faster))
    assert problems == [
        "constants.fast: read by nodes.score_transactions.steps[5] (aggregate), which keeps state "
        "(needs a restart)"
    ]
