"""Loading topology YAML: interpolation, validation errors mapped to file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_orch.errors import UserError
from stream_orch.topology.loader import LoadedTopology, Problem, SpecError, load_topology, parse_topology

MINIMAL = """\
topology: t
topics:
  in: {key: id}
  out: {}
nodes:
  n:
    input: in
    steps:
      - step: derive
        fields:
          x: id + 1
    routes:
      - to: out
    errors: {dlq: in.dlq}
"""


def problems_of(text: str, env: dict[str, str] | None = None) -> list[Problem]:
    with pytest.raises(SpecError) as info:
        parse_topology(text, "t.yaml", env=env or {})
    return info.value.problems


def one(text: str, env: dict[str, str] | None = None) -> Problem:
    found = problems_of(text, env)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def test_minimal_loads() -> None:
    loaded = parse_topology(MINIMAL, "t.yaml", env={})
    assert isinstance(loaded, LoadedTopology)
    assert loaded.spec.nodes["n"].routes[0].targets()[0].topic == "out"
    assert loaded.file == "t.yaml"


def test_line_of_follows_keys_indexes_and_aliases() -> None:
    loaded = parse_topology(MINIMAL.replace("  out: {}", "  out:\n    schema: s"), "t.yaml", env={})
    assert loaded.line_of(("nodes", "n", "input")) == 8
    assert loaded.line_of(("nodes", "n", "steps", 0, "fields", "x")) == 12
    assert loaded.line_of(("topics", "out", "schema_")) == 5  # Python name finds the YAML alias
    assert loaded.line_of(("topics", "out", "schema")) == 5
    assert loaded.line_of(("nodes", "n", "batch_size")) == 7  # defaulted: the enclosing key


def test_problem_str_format() -> None:
    assert str(Problem("f.yaml", 3, "bad thing", "fix it")) == "f.yaml:3: bad thing (hint: fix it)"
    warning = Problem("f.yaml", 3, "odd thing", "look", "warning")
    assert str(warning) == "f.yaml:3: warning: odd thing (hint: look)"


def test_env_interpolation_with_default_and_value() -> None:
    text = MINIMAL.replace(
        "  out: {}", "  out:\n    partitions: ${PARTS:3}\n    description: at ${SITE:home}"
    )
    assert parse_topology(text, env={}).spec.topics["out"].partitions == 3
    loaded = parse_topology(text, env={"PARTS": "12", "SITE": "prod"})
    assert loaded.spec.topics["out"].partitions == 12
    assert loaded.spec.topics["out"].description == "at prod"


def test_whole_unquoted_reference_takes_its_yaml_type_quoted_stays_string() -> None:
    text = MINIMAL.replace("topics:", "constants:\n  a: ${A:2.5}\n  b: '${B:7}'\n  c: $$HOME\ntopics:")
    constants = parse_topology(text, env={}).spec.constants
    assert constants == {"a": 2.5, "b": "7", "c": "$HOME"}


def test_missing_env_var_names_its_line() -> None:
    problem = one(MINIMAL.replace("{dlq: in.dlq}", "\n      dlq: ${DLQ_TOPIC}"))
    assert problem.line == 15
    assert "DLQ_TOPIC is not set" in problem.message
    assert "${DLQ_TOPIC:default}" in problem.hint


def test_missing_field_points_at_the_enclosing_key() -> None:
    problem = one(MINIMAL.replace("    input: in\n", ""))
    needs = "nodes.n: a node needs `input` (the topic it reads) or `schedule` (when it runs)"
    assert (problem.line, problem.message) == (6, needs)


def test_unknown_key_suggests_the_alias_spelling() -> None:
    problem = one(MINIMAL.replace("  out: {}", "  out: {schem: x}"))
    assert problem.line == 4
    assert problem.message == "topics.out: unknown key `schem`"
    assert problem.hint == "did you mean `schema`?"


def test_step_union_tag_is_skipped_in_location() -> None:
    problem = one(MINIMAL.replace("      - step: derive\n", "      - step: derive\n        wen: 1\n"))
    assert problem.line == 10
    assert problem.message == "nodes.n.steps[0]: unknown key `wen`"
    assert "steps[0].derive" not in str(problem)


def test_unknown_step_kind_suggests_close_match() -> None:
    problem = one(MINIMAL.replace("step: derive", "step: derivee"))
    assert problem.line == 9
    assert problem.message == "nodes.n.steps[0]: unknown step `derivee`"
    assert problem.hint == "did you mean `derive`?"


def test_route_target_union_reports_only_the_meant_branch() -> None:
    problem = one(MINIMAL.replace("      - to: out\n", "      - to: [{topic: out, kee: id}]\n"))
    assert problem.line == 13
    assert "unknown key `kee`" in problem.message


def test_model_validator_error_at_route_line() -> None:
    problem = one(
        MINIMAL.replace("      - to: out\n", "      - to: out\n        when: x\n        otherwise: true\n")
    )
    assert problem.line == 13
    assert "either `when` or `otherwise: true`" in problem.message


def test_bad_duration_and_literal() -> None:
    text = MINIMAL.replace("  out: {}", "  out: {retention: 3 weeks, format: xml}")
    messages = {p.message for p in problems_of(text)}
    assert any("retention" in m and "not a duration" in m for m in messages)
    assert any("format" in m and "'json' or 'avro'" in m for m in messages)


def test_every_problem_is_reported_not_just_the_first() -> None:
    text = MINIMAL.replace("  out: {}", "  out: {partitions: 0, foo: 1}").replace("input: in", "input: ${X}")
    assert len(problems_of(text)) == 3


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("topology: t\ntopics: {a: [1}\n", 2, "YAML syntax error"),
        ("topology: t\ntopology: u\n", 2, "duplicate key"),
        ("topology: t\n  bad: indent: here\n", 2, "YAML syntax error"),
        ("- a\n- b\n", 1, "must be a YAML mapping"),
        ("", 1, "must be a YAML mapping"),
    ],
)
def test_yaml_problems_are_one_line_with_line(text: str, line: int, fragment: str) -> None:
    problem = one(text)
    assert problem.line == line
    assert fragment in problem.message
    assert problem.hint


def test_spec_error_is_a_user_error_with_one_line_per_problem() -> None:
    with pytest.raises(SpecError) as info:
        parse_topology(MINIMAL.replace("  out: {}", "  out: {a: 1, b: 2}"), "t.yaml", env={})
    assert isinstance(info.value, UserError)
    assert info.value.exit_code == 1
    assert str(info.value).splitlines() == [str(p) for p in info.value.problems]


def test_load_topology_missing_file_is_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="topology file not found"):
        load_topology(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match="is a directory"):
        load_topology(tmp_path)


def test_load_topology_reads_file_and_uses_its_path(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(MINIMAL.replace("input: in", "input: nope: x"))
    with pytest.raises(SpecError) as info:
        load_topology(path)
    assert str(info.value).startswith(f"{path}:7: YAML syntax error")


ENV_KEYS = """\
topology: t
topics:
  ${ENV:dev}.in: {key: id}
  ${ENV:dev}.out: {}
nodes:
  n:
    input: ${ENV:dev}.in
    routes:
      - to: ${ENV:dev}.out
    errors: {dlq: in.dlq}
"""


def test_mapping_keys_are_interpolated_and_keep_their_lines() -> None:
    loaded = parse_topology(ENV_KEYS, "t.yaml", env={"ENV": "prod"})
    assert list(loaded.spec.topics) == ["prod.in", "prod.out"]
    assert loaded.spec.nodes["n"].input == "prod.in"
    assert loaded.line_of(("topics", "prod.out")) == 4
    assert list(parse_topology(ENV_KEYS, "t.yaml", env={}).spec.topics) == ["dev.in", "dev.out"]


def test_mapping_key_that_is_a_number_stays_a_string() -> None:
    text = ENV_KEYS.replace("${ENV:dev}.out: {}", "${N:7}: {}").replace("to: ${ENV:dev}.out", "to: '7'")
    assert list(parse_topology(text, "t.yaml", env={}).spec.topics) == ["dev.in", "7"]


def test_mapping_key_problems_name_their_line() -> None:
    problem = one(ENV_KEYS.replace("${ENV:dev}.out: {}", "${OUT}: {}").replace("to: ${ENV:dev}.out", "to: x"))
    assert (problem.line, "OUT is not set" in problem.message) == (4, True)
    clash = one(ENV_KEYS.replace("${ENV:dev}.out: {}", "${ENV:dev}.out: {}\n  prod.out: {}"), {"ENV": "prod"})
    assert clash.line == 4 and "already a key" in clash.message
