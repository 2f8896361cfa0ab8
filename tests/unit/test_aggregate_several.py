"""The sliding `aggregate` step with several results (`aggregate:`, the window step's form and
functions, issue 20): every record's results equal a brute-force computation over the records of
its key that arrived before it (itself included) with time in (t - window, t], in time order and
shuffled; a record missing a field is rejected; the model refuses what does not fit."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from step_harness import SCHEMAS

from stream_orch.testing import TopologyTestDriver
from stream_orch.topology.lint import lint
from stream_orch.topology.loader import parse_topology
from stream_orch.topology.models import TopologySpec
from stream_orch.topology.models_sliding import AggregateStep

T0 = 1_700_000_000_000
WINDOW = 30_000
AGGREGATE = {
    "n": "count",
    "total": {"sum": "amount"},
    "low": {"min": "amount"},
    "high": {"max": "amount"},
    "mean": {"avg": "amount"},
    "first_hub": {"first": "hub"},
    "last_hub": {"last": "hub"},
    "hubs": {"count_distinct": "hub"},
}


def topology(when: str | None = None) -> TopologySpec:
    step: dict[str, Any] = {"step": "aggregate", "table": "recent", "key": "k", "window": "30s"}
    step["aggregate"] = AGGREGATE
    if when is not None:
        step["when"] = when
    return TopologySpec.model_validate(
        {
            "topology": "several",
            "topics": {"tx": {"partitions": 3, "key": "k"}, "out": {"partitions": 3, "key": "k"}},
            "tables": {"recent": {}},
            "nodes": {
                "agg": {
                    "input": "tx",
                    "steps": [step],
                    "routes": [{"to": "out"}],
                    "errors": {"dlq": "tx.dlq"},
                }
            },
        }
    )


def records(n: int, seed: int, shuffle: bool) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out, t = [], T0
    for i in range(n):
        t += rng.randrange(0, 3000)
        amount: int | float = rng.randrange(-50, 100) if rng.random() < 0.7 else rng.random() * 10
        out.append(
            {"k": f"K{rng.randrange(4)}", "ts": t, "amount": amount, "hub": f"H{rng.randrange(6)}", "i": i}
        )
    if shuffle:  # out of order by less than the grace (one window): every result stays exact
        out.sort(key=lambda r: r["ts"] + rng.randrange(0, WINDOW // 2))
    return out


def reference(arrived: list[dict[str, Any]], record: dict[str, Any], entered: Any) -> dict[str, Any]:
    """The results for ``record`` over ``arrived`` (its key's records before it, itself included)."""
    t = record["ts"]
    inside = [r for r in arrived if t - WINDOW < r["ts"] <= t and entered(r)]
    amounts = [r["amount"] for r in inside]
    by_time = sorted(range(len(inside)), key=lambda j: inside[j]["ts"])  # stable: arrival breaks ties
    first = inside[by_time[0]]["hub"] if inside else None
    last = None
    if inside:  # the latest arrival among the greatest times
        top = max(r["ts"] for r in inside)
        last = [r for r in inside if r["ts"] == top][-1]
    return {
        "n": len(inside),
        "total": sum(amounts),
        "low": min(amounts, default=None),
        "high": max(amounts, default=None),
        "mean": sum(amounts) / len(amounts) if amounts else None,
        "first_hub": first,
        "last_hub": last["hub"] if last else None,
        "hubs": len({r["hub"] for r in inside}),
    }


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("when", [None, "amount > 0"])
def test_several_results_equal_a_brute_force_computation(shuffle: bool, when: str | None) -> None:
    inputs = records(600, seed=3, shuffle=shuffle)
    entered = (lambda r: r["amount"] > 0) if when else (lambda r: True)
    with TopologyTestDriver(topology(when), schemas=SCHEMAS, start_ms=T0) as d:
        d.pipe_many("tx", inputs)
        got = {r.value["i"]: r.value for r in d.records("out")}
    assert len(got) == len(inputs)
    seen: dict[str, list[dict[str, Any]]] = {}
    for record in inputs:
        arrived = seen.setdefault(record["k"], [])
        arrived.append(record)
        expected = reference(arrived, record, entered)
        result = {name: got[record["i"]][name] for name in AGGREGATE}
        assert result == pytest.approx(expected), (record, result, expected)


def test_a_record_missing_a_field_is_rejected_and_counts_in_no_result() -> None:
    inputs = [
        {"k": "A", "ts": T0, "amount": 5, "hub": "H1", "i": 0},
        {"k": "A", "ts": T0 + 1, "amount": 7, "i": 1},  # no hub
        {"k": "A", "ts": T0 + 2, "amount": "x", "hub": "H2", "i": 2},
        {"k": "A", "ts": T0 + 3, "amount": 1, "hub": "H3", "i": 3},
    ]
    with TopologyTestDriver(topology(), schemas=SCHEMAS, start_ms=T0) as d:
        d.pipe_many("tx", inputs)
        got = [r.value for r in d.records("out")]
        reasons = sorted((r.reason or "").split(":")[0] for r in d.dead_letters())
    assert [(r["i"], r["n"], r["total"], r["first_hub"], r["last_hub"]) for r in got] == [
        (0, 1, 5, "H1", "H1"),
        (3, 2, 6, "H1", "H3"),
    ]
    assert reasons == ["invalid_field", "missing_field"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"aggregate": {"xs": {"collect": "hub"}}}, "collect is not computed over a sliding window"),
        ({"aggregate": {"n": "count"}, "as": "n"}, "`aggregate` replaces `as`"),
        ({"aggregate": {}}, "needs at least one result"),
        ({}, "needs `as` (one result) or `aggregate`"),
    ],
)
def test_the_model_refuses_what_does_not_fit(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        AggregateStep.model_validate(
            {"step": "aggregate", "table": "t", "key": "k", "window": "1m", **fields}
        )


LINTED = """\
topology: parcels
topics:
  scans: {partitions: 3, key: hub, schema: scan}
  out: {partitions: 3, key: hub}
tables:
  recent: {}
nodes:
  recent:
    input: scans
    steps:
      - step: aggregate
        table: recent
        key: hub
        window: 1m
        aggregate: {n: count, first_parcel: {first: parcel_id}, kinds: {count_distinct: kind}}
      - {step: filter, when: "n > 1 and first_parcel != 'x'"}
    routes: [{to: out}]
    errors: {dlq: scans.dlq}
"""


def test_lint_checks_each_results_field_and_knows_the_result_names() -> None:
    root = Path(__file__).resolve().parents[2]

    def errors(text: str) -> list[tuple[int, str]]:
        loaded = parse_topology(text, root / "inline.yaml", env={})
        problems = lint(loaded, root / "tests" / "fixtures" / "schemas")
        return [(p.line, p.message) for p in problems if p.severity == "error"]

    assert errors(LINTED) == []
    assert errors(LINTED.replace("{first: parcel_id}", "{first: parcel}")) == [
        (15, "node `recent`, step aggregate, result `first_parcel`: unknown field `parcel`")
    ]
