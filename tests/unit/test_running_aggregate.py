"""``aggregate`` without ``window``: one value per key, through the test driver (stream_orch/steps/
running_aggregate.py). Expected results are folded from the inputs here, not taken from a run."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_orch.state.tables import LocalTable
from stream_orch.testing.driver import TopologyTestDriver
from stream_orch.topology.lint import lint
from stream_orch.topology.loader import parse_topology
from stream_orch.topology.problems import SpecError

T0 = 1_767_225_600_000

TOPOLOGY = """\
topology: running
version: "1"
processing: exactly_once
topics:
  moves: {partitions: 3, key: item}
  levels: {partitions: 3, key: item}
  moves.dlq: {partitions: 1}
tables:
  totals: {description: running results per item}
nodes:
  count:
    input: moves
    steps:
      - step: aggregate
        table: totals
        key: item
        aggregate:
          n: count
          level: {sum: delta}
          low: {min: delta}
          high: {max: delta}
          mean: {avg: delta}
          first_by: {first: who}
          last_by: {last: who}
      - step: derive
        fields: {inverse: "100 / delta"}   # delta 0 fails here, after the aggregate counted it
    routes:
      - to: levels
    errors: {dlq: moves.dlq}
"""

SINGLE = """\
topology: single
version: "1"
topics:
  moves: {partitions: 2, key: item}
  levels: {partitions: 2, key: item}
tables:
  totals: {}
nodes:
  count:
    input: moves
    steps:
      - {step: aggregate, table: totals, key: item, function: sum, field: delta, as: level}
    routes: [{to: levels}]
"""


def _driver(tmp_path: Path, text: str = TOPOLOGY, **kw: Any) -> TopologyTestDriver:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    return TopologyTestDriver(path, schemas=tmp_path, start_ms=T0, **kw)


def _moves(n: int, seed: int = 7, zeros: bool = False) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    deltas = [d for d in range(-5, 6) if zeros or d]
    return [{"item": rng.choice("abcd"), "delta": rng.choice(deltas), "who": f"w{i}"} for i in range(n)]


def _expected(moves: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each record's results: over the earlier records of its item and itself, in order."""
    seen: dict[str, list[dict[str, Any]]] = {}
    out = []
    for m in moves:
        rows = seen.setdefault(m["item"], [])
        rows.append(m)
        deltas = [r["delta"] for r in rows]
        out.append(
            {
                "n": len(rows),
                "level": sum(deltas),
                "low": min(deltas),
                "high": max(deltas),
                "mean": sum(deltas) / len(deltas),
                "first_by": rows[0]["who"],
                "last_by": rows[-1]["who"],
            }
        )
    return out


def _results(records: list[Any]) -> dict[str, dict[str, Any]]:
    names = ("n", "level", "low", "high", "mean", "first_by", "last_by")
    return {r.value["who"]: {k: r.value[k] for k in names} for r in records}


def test_every_record_gets_the_results_over_its_key_so_far(tmp_path: Path) -> None:
    moves = _moves(300)
    with _driver(tmp_path) as d:
        d.pipe_many("moves", moves)
        got = _results(d.records("levels"))
    assert got == {m["who"]: e for m, e in zip(moves, _expected(moves), strict=True)}


def test_the_state_per_key_stays_one_value_of_constant_size(tmp_path: Path) -> None:
    """The sliding form keeps an entry per record; this one keeps one value, whose bytes do not
    grow with the key's records (sums kept bounded: +3/-3, and a count of 3 digits both times)."""
    with _driver(tmp_path, SINGLE) as d:
        sizes = []
        for total in (100, 900):
            while len(d.records("levels")) < total:
                n = len(d.records("levels"))
                d.pipe("moves", {"item": "a", "delta": 3 if n % 2 == 0 else -3})
            table = d.table("totals")
            assert list(table) == ["a"]  # one key, one value
            sizes.append(len(orjson.dumps(table["a"])))
        assert table["a"] == {"n": 900, "a": 0}
    assert sizes[0] == sizes[1]


def test_a_failed_event_is_taken_back_and_its_retry_counts_once(tmp_path: Path) -> None:
    """delta 0 passes the aggregate, then fails in derive (DLQ): the stored value is folded again
    without it; the records after it in the batch keep the results that counted it."""
    moves = _moves(200, seed=3, zeros=True)
    with _driver(tmp_path) as d:
        d.pipe_many("moves", moves)
        dead = {r.value["who"] for r in d.dead_letters()}
        table = d.table("totals")
    passed = [m for m in moves if m["delta"] != 0]
    assert dead == {m["who"] for m in moves if m["delta"] == 0} and dead
    for item in "abcd":
        mine = [m for m in passed if m["item"] == item]
        want = _expected(mine)[-1]
        n, acc = table[item]["n"], table[item]["a"]
        assert n == want["n"]
        assert acc[1:4] == [want["level"], want["low"], want["high"]]
        assert acc[4] == want["level"]  # avg keeps the sum
        assert [acc[5][1], acc[6][1]] == [want["first_by"], want["last_by"]]


def test_a_restart_from_the_changelog_goes_on_from_the_stored_values(tmp_path: Path) -> None:
    """A second driver whose stores are rebuilt from the first one's changelog records (as a
    worker restores them) gives the second half the results of one uninterrupted run."""
    moves = _moves(240, seed=11)
    with _driver(tmp_path, changelogs=True) as first:
        first.pipe_many("moves", moves[:120])
        changelog = first.records("running.totals.changelog")
    assert changelog, "the running values are written to the changelog"
    with _driver(tmp_path) as second:
        _restore(second, changelog)
        second.pipe_many("moves", moves[120:])
        got = _results(second.records("levels"))
    assert got == {m["who"]: e for m, e in zip(moves, _expected(moves), strict=True) if m in moves[120:]}


def test_bad_records_go_to_the_dlq_with_their_reason(tmp_path: Path) -> None:
    with _driver(tmp_path) as d:
        d.pipe_many(
            "moves",
            [
                {"item": "a", "delta": "x", "who": "w1"},
                {"item": "a", "who": "w2"},
                {"delta": 1, "who": "w3"},
                {"item": "a", "delta": 2, "who": "w4"},
            ],
        )
        reasons = {r.value["who"]: r.reason for r in d.dead_letters()}
        assert [r.value["level"] for r in d.records("levels")] == [2]
    assert reasons == {
        "w1": "invalid_field: delta must be a number (got 'x')",
        "w2": "missing_field: delta is required to aggregate",
        "w3": "missing_field: item is required to aggregate",
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("aggregate: {n: count}\n        time_field: at", "reads no time: drop `time_field`"),
        ("aggregate: {n: count}\n        idle_timeout: 5s", "reads no time: drop `idle_timeout`"),
        ("aggregate: {ids: {collect: who}}", "collect is not computed by a running aggregate"),
        ("aggregate: {ids: {count_distinct: who}}", "count_distinct is not computed by a running"),
    ],
)
def test_model_refuses_what_a_running_aggregate_cannot_do(change: str, message: str) -> None:
    start, end = TOPOLOGY.index("aggregate:\n"), TOPOLOGY.index("      - step: derive")
    text = TOPOLOGY.replace(TOPOLOGY[start:end], change + "\n")
    with pytest.raises(SpecError) as err:
        parse_topology(text, "t.yaml", env={})
    shown = "\n".join(str(p) for p in err.value.problems)
    assert message in shown and "t.yaml:" in shown, shown


def test_lint_the_key_must_be_the_partition_key_and_fields_known(tmp_path: Path) -> None:
    fields = [{"name": n, "type": ["null", "string"]} for n in ("item", "who")]
    fields.append({"name": "delta", "type": ["null", "int"]})
    schema = {"type": "record", "name": "Move", "fields": fields}
    (tmp_path / "move.avsc").write_bytes(orjson.dumps(schema))
    typed = TOPOLOGY.replace(
        "moves: {partitions: 3, key: item}", "moves: {partitions: 3, key: item, schema: move}"
    )
    assert lint(parse_topology(typed, "t.yaml", env={}), tmp_path) == []
    text = typed.replace("key: item\n        aggregate", "key: who\n        aggregate").replace(
        "{sum: delta}", "{sum: dleta}"
    )
    problems = [str(p) for p in lint(parse_topology(text, "t.yaml", env={}), tmp_path)]
    assert any("t.yaml:" in p and "not co-partitioned" in p for p in problems), problems
    assert any("t.yaml:" in p and "dleta" in p for p in problems), problems


def test_lint_warns_a_running_aggregate_under_at_least_once(tmp_path: Path) -> None:
    text = TOPOLOGY.replace("processing: exactly_once", "processing: at_least_once")
    problems = [p for p in lint(parse_topology(text, "t.yaml", env={}), tmp_path) if "replayed" in p.message]
    line = text[: text.index("        table: totals")].count("\n") + 1
    assert [(p.severity, p.line) for p in problems] == [("warning", line)]


def _restore(driver: TopologyTestDriver, changelog: list[Any]) -> None:
    """The driver's stores rebuilt from changelog records, latest per key, as a worker restores them."""
    table = driver.nodes["count"].tables["totals"]
    assert isinstance(table, LocalTable)
    for record in changelog:
        value = None if record.raw_value is None else orjson.loads(record.raw_value)
        table.open(record.partition).write({record.key: value}, record.offset + 1)


def test_a_sliding_aggregate_s_table_is_taken_over_and_its_window_records_deleted(tmp_path: Path) -> None:
    """The inventory's change: the same table written by a 100-year sliding sum (a busy key in
    chunks of 256 entries) is read by the running sum, which goes on from the window's total."""
    sliding = SINGLE.replace("key: item, function", "key: item, window: 36500d, function")
    moves = [{"item": "a" if i % 10 else "b", "delta": i % 7 - 3, "ts": T0 + i} for i in range(700)]
    with _driver(tmp_path, sliding, changelogs=True) as first:
        first.pipe_many("moves", moves[:600])
        changelog = first.records("single.totals.changelog")
        assert any("\x1f" in r.key for r in changelog), "the busy key's window is in chunks"
    with _driver(tmp_path, SINGLE) as second:
        _restore(second, changelog)
        second.pipe_many("moves", moves[600:])
        got = [r.value["level"] for r in second.records("levels")]
        table = second.table("totals")
    want, totals = [], {"a": 0, "b": 0}
    for m in moves:
        totals[m["item"]] += m["delta"]
        want.append(totals[m["item"]])
    assert got == want[600:]
    assert set(table) == {"a", "b"}  # the chunks are deleted
    assert {k: v["a"] for k, v in table.items()} == totals
    assert {k: v["n"] for k, v in table.items()} == {"a": 630, "b": 70}


def test_a_table_of_another_kind_rejects_the_record_with_state_mismatch(tmp_path: Path) -> None:
    with _driver(tmp_path, SINGLE, changelogs=True) as d:
        table = d.nodes["count"].tables["totals"]
        assert isinstance(table, LocalTable)
        for p in range(2):
            table.open(p).write({"a": {"seen": 1}}, 1)
        d.pipe_many("moves", [{"item": "a", "delta": 1}, {"item": "z", "delta": 2}])
        assert [r.value["level"] for r in d.records("levels")] == [2]
        assert [r.reason for r in d.dead_letters()] == [
            "state_mismatch: table totals holds another step's value for this key"
        ]


def test_when_counts_only_the_matching_records_and_every_record_gets_the_result(tmp_path: Path) -> None:
    text = SINGLE.replace("as: level}", "as: level, when: 'delta > 0'}")
    moves = [{"item": "a", "delta": d} for d in (3, -2, 5, -7, 1)]
    with _driver(tmp_path, text) as d:
        d.pipe_many("moves", moves)
        got = [r.value["level"] for r in d.records("levels")]
    want, total = [], 0
    for m in moves:
        total += m["delta"] if m["delta"] > 0 else 0
        want.append(total)
    assert got == want
