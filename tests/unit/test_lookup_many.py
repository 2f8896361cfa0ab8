"""``lookup_many`` (stream_orch/steps/lookup_many.py) through the test driver: one lookup per
element of a list, the elements kept in list order; untrusted values never stop the node; lint
names the file and line of a wrong field or expression."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson

from stream_orch.testing.driver import TopologyTestDriver
from stream_orch.topology.lint import lint
from stream_orch.topology.loader import parse_topology

T0 = 1_767_225_600_000

TOPOLOGY = """\
topology: alike
version: "1"
topics:
  asks: {partitions: 2, key: store}
  levels: {partitions: 3, key: stock_key, compact: true}
  answers: {partitions: 2, key: store}
  asks.dlq: {partitions: 1}
tables:
  levels: {topic: levels, global: true}
nodes:
  answer:
    input: asks
    steps:
      - step: lookup_many
        table: levels
        each: skus
        key: store + ':' + item
        keep: level > 0
        as: in_stock
    routes: [{to: answers}]
    errors: {dlq: asks.dlq}
"""


def _driver(tmp_path: Path, text: str = TOPOLOGY) -> TopologyTestDriver:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    return TopologyTestDriver(path, schemas=tmp_path, start_ms=T0)


def test_the_elements_whose_row_holds_are_kept_in_list_order(tmp_path: Path) -> None:
    rng = random.Random(5)
    levels = {f"S{s}:P{p}": rng.randrange(-2, 4) for s in range(3) for p in range(8) if rng.random() < 0.7}
    asks = [
        {
            "id": i,
            "store": f"S{rng.randrange(3)}",
            "skus": [f"P{rng.randrange(9)}" for _ in range(rng.randrange(6))],
        }
        for i in range(200)
    ]
    with _driver(tmp_path) as d:
        for key, level in levels.items():
            d.pipe("levels", {"stock_key": key, "level": level}, key=key)
        d.pipe_many("asks", asks)
        got = {r.value["id"]: r.value["in_stock"] for r in d.records("answers")}
    want = {a["id"]: [s for s in a["skus"] if levels.get(f"{a['store']}:{s}", 0) > 0] for a in asks}
    assert got == want and any(want.values()) and not all(want.values())


def test_untrusted_values_go_to_the_dlq_or_leave_the_element_out(tmp_path: Path) -> None:
    with _driver(tmp_path) as d:
        d.pipe("levels", b'{"stock_key": "S1:P1", "level": ', key="S1:P1")  # unreadable: no row
        d.pipe("levels", {"stock_key": "S1:P2", "level": "many"}, key="S1:P2")  # keep fails: out
        d.pipe("levels", {"stock_key": "S1:P3"}, key="S1:P3")  # no level: out
        d.pipe("levels", {"stock_key": "S1:P4", "level": 1}, key="S1:P4")
        asks: list[dict[str, Any]] = [
            {"id": 1, "store": "S1", "skus": ["P1", "P2", "P3", "P4"]},
            {"id": 2, "store": "S1", "skus": "P4"},
            {"id": 3, "store": "S1"},
            {"id": 4, "store": 7, "skus": ["P4"]},  # store + ':' fails for a number
        ]
        d.pipe_many("asks", asks)
        got = {r.value["id"]: r.value["in_stock"] for r in d.records("answers")}
        reasons = {r.value["id"]: r.reason for r in d.dead_letters()}
    assert got == {1: ["P4"]}
    assert reasons[2] == "invalid_field: skus must be a list to look up levels (got 'P4')"
    assert reasons[3] == "missing_field: skus must be a list to look up levels (got null)"
    assert reasons[4].startswith("expression_error: lookup_many key:")


def test_lint_names_the_line_of_a_wrong_field_or_expression(tmp_path: Path) -> None:
    fields = [{"name": n, "type": ["null", "string"]} for n in ("store", "id")]
    fields.append({"name": "skus", "type": ["null", {"type": "array", "items": "string"}]})
    (tmp_path / "ask.avsc").write_bytes(orjson.dumps({"type": "record", "name": "Ask", "fields": fields}))
    row = [{"name": "stock_key", "type": "string"}, {"name": "level", "type": "int"}]
    (tmp_path / "level.avsc").write_bytes(orjson.dumps({"type": "record", "name": "Level", "fields": row}))
    typed = TOPOLOGY.replace("key: store}\n  levels", "key: store, schema: ask}\n  levels").replace(
        "compact: true}", "compact: true, schema: level}"
    )
    assert [str(p) for p in lint(parse_topology(typed, "t.yaml", env={}), tmp_path)] == []
    bad = typed.replace("each: skus", "each: skuz").replace("store + ':'", "stor + ':'")
    bad = bad.replace("keep: level > 0", "keep: levle > 0")
    problems = [str(p) for p in lint(parse_topology(bad, "t.yaml", env={}), tmp_path)]
    for name, text in (("skuz", "each: skuz"), ("stor", "key: stor +"), ("levle", "keep: levle")):
        line = bad[: bad.index(text)].count("\n") + 1
        assert any(p.startswith(f"t.yaml:{line}:") and name in p for p in problems), (name, problems)
    unfed = typed.replace("levels: {topic: levels, global: true}", "levels: {}")
    problems = [str(p) for p in lint(parse_topology(unfed, "t.yaml", env={}), tmp_path)]
    assert any("has no `topic`" in p for p in problems), problems
