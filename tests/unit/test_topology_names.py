"""Names in a topology: one rule for topology, node and table names (they become parts of paths,
topic names, consumer groups and transactional ids), Kafka's rule for topic names; checked when
the topology is loaded, with the line, and shown in the JSON Schema."""

from __future__ import annotations

import pytest

from stream_orch.topology.docs import topology_json_schema
from stream_orch.topology.lint import lint
from stream_orch.topology.loader import Problem, SpecError, parse_topology

MINIMAL = """\
topology: t
topics:
  in: {key: id}
  out: {}
tables:
  seen: {}
nodes:
  n:
    input: in
    steps:
      - {step: dedupe, field: id, table: seen, horizon: 1h}
    routes:
      - to: out
    errors: {dlq: in.dlq}
"""


def with_topic(text: str, topic: str) -> str:
    """``text`` with the output topic `out` renamed."""
    return text.replace("  out: {}", f"  '{topic}': {{}}").replace("to: out", f"to: '{topic}'")


def problems_of(text: str) -> list[Problem]:
    with pytest.raises(SpecError) as info:
        parse_topology(text, "t.yaml", env={})
    return info.value.problems


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        ("topology: t", "topology: '..'", 1, "topology: `..` is not a valid name"),
        ("topology: t", "topology: a/b", 1, "topology: `a/b` is not a valid name"),
        ("  seen: {}", "  ../../seen: {}", 6, "tables: `../../seen` is not a valid name"),
        ("table: seen,", "table: ../seen,", 11, "nodes.n.steps[0].table: `../seen` is not a valid name"),
        ("  n:\n", "  -n:\n", 8, "nodes: `-n` is not a valid name"),
        ("  out: {}", "  out/x: {}", 4, "topics: `out/x` is not a valid topic name"),
        ("  out: {}", "  '..': {}", 4, "topics: `..` is not a valid topic name"),
        ("  out: {}", "  '.': {}", 4, "topics: `.` is not a valid topic name"),
        ("input: in", "input: in put", 9, "nodes.n.input: `in put` is not a valid topic name"),
        ("- to: out", "- to: ø", 13, "nodes.n.routes[0].to: `ø` is not a valid topic name"),
        (
            "- to: out",
            "- to: [ok, {topic: a b}]",
            13,
            "nodes.n.routes[0].to[1].topic: `a b` is not a valid topic name",
        ),
        ("{dlq: in.dlq}", "{dlq: 'in:dlq'}", 14, "nodes.n.errors.dlq: `in:dlq` is not a valid topic name"),
    ],
)
def test_bad_names_are_problems_at_their_line(old: str, new: str, line: int, message: str) -> None:
    assert old in MINIMAL
    found = [(p.line, p.message) for p in problems_of(MINIMAL.replace(old, new, 1))]
    assert (line, message) in found, found


def test_the_name_problem_says_the_rule() -> None:
    (problem,) = problems_of(
        MINIMAL.replace("  seen: {}", "  ../../seen: {}").replace("table: seen", "table: s")
    )
    assert problem.hint == (
        "names have letters, digits, `.`, `_` and `-`, start with a letter or digit and have at most "
        "100 characters"
    )
    (topic,) = problems_of(MINIMAL.replace("input: in", "input: a/b"))
    assert topic.hint == (
        "topic names have letters, digits, `.`, `_` and `-` (Kafka's rule), at most 249 characters, "
        "and are not `.` or `..`"
    )


def test_lengths_at_and_over_the_limit() -> None:
    def renamed(table: str, topic: str) -> str:
        return with_topic(MINIMAL.replace("seen", table), topic)

    parse_topology(renamed("s" * 100, "o" * 249), "t.yaml", env={})
    assert [p.message for p in problems_of(renamed("s" * 101, "out"))] == [
        f"tables: `{'s' * 101}` is not a valid name",
        f"nodes.n.steps[0].table: `{'s' * 101}` is not a valid name",
    ]
    assert f"`{'o' * 250}` is not a valid topic name" in problems_of(renamed("seen", "o" * 250))[0].message


@pytest.mark.parametrize("topic", ["...", ".x", "..x", "_x", "-x", "a.b_c-D9"])
def test_kafka_legal_topic_names_load(topic: str) -> None:
    parse_topology(with_topic(MINIMAL, topic), "t.yaml", env={})


def test_a_retry_topic_longer_than_kafka_allows_is_a_lint_error() -> None:
    long = "i" * 245
    text = MINIMAL.replace("  in: {", f"  {long}: {{").replace("input: in", f"input: {long}")
    text = text.replace("{dlq: in.dlq}", "{retry: {delays: [1s]}, dlq: d}")
    loaded = parse_topology(text, "t.yaml", env={})
    problems = [p for p in lint(loaded, "schemas") if "249" in p.message]
    assert [(p.line, p.message) for p in problems] == [
        (9, f"node `n`: topic `{'i' * 245}.retry.1` that its errors imply has more than 249 characters")
    ]


def test_json_schema_shows_the_rules() -> None:
    schema = topology_json_schema()
    name = {"pattern": "^[A-Za-z0-9][A-Za-z0-9._-]*$", "maxLength": 100}
    assert {k: schema["properties"]["topology"][k] for k in name} == name
    for key in ("tables", "nodes"):
        assert schema["properties"][key]["propertyNames"] == name, key
    topics = schema["properties"]["topics"]["propertyNames"]
    assert topics["maxLength"] == 249 and "pattern" in topics
    assert schema["$defs"]["NodeSpec"]["properties"]["input"]["maxLength"] == 249
    assert schema["$defs"]["DedupeStep"]["properties"]["table"]["maxLength"] == 100
