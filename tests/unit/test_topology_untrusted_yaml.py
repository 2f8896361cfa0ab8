"""A topology file that is not what it should be gets one line naming where, never a traceback
or a hang: tags outside the YAML core schema, deep nesting, alias bombs, oversized files.

The CLI cases run ``stream-orch validate FILE`` in a subprocess, as a user would.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka_helpers import run_cli

from stream_orch.errors import UserError
from stream_orch.topology.loader import SpecError, parse_topology

MINIMAL = """\
topology: t
topics:
  in: {key: id}
  out: {}
nodes:
  n:
    input: in
    routes:
      - to: out
    errors: {dlq: in.dlq}
"""


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """``levels`` anchors, each a list of ``width`` aliases of the previous: width**levels values."""
    lines = ["  a0: &a0 [" + ", ".join(["x"] * width) + "]"]
    lines += [f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels + 1)]
    return MINIMAL.replace("topics:", "constants:\n" + "\n".join(lines) + "\ntopics:")


async def refused_by_cli(tmp_path: Path, text: str) -> str:
    """Run ``stream-orch validate`` on ``text``; check it failed with one line; return that line."""
    path = tmp_path / "t.yaml"
    path.write_text(text)
    rc, out, err = await run_cli("validate", str(path), timeout=120)
    assert rc != 0
    assert "Traceback" not in out + err
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"stream-orch: error: {path}:")
    return err.strip()


async def test_python_tag_is_refused_with_its_line(tmp_path: Path) -> None:
    text = MINIMAL.replace("  out: {}", '  out: !!python/object/apply:os.system ["echo hi"]')
    line = await refused_by_cli(tmp_path, text)
    assert f"{tmp_path / 't.yaml'}:4: YAML tag `!!python/object/apply:os.system` is not allowed" in line


async def test_deep_flow_sequence_is_refused_with_its_line(tmp_path: Path) -> None:
    text = MINIMAL.replace("topics:", "constants:\n  x: " + "[" * 100_000 + "]" * 100_000 + "\ntopics:")
    line = await refused_by_cli(tmp_path, text)
    assert f"{tmp_path / 't.yaml'}:3: YAML nesting deeper than 64 levels" in line


async def test_alias_bomb_is_refused_with_its_line(tmp_path: Path) -> None:
    line = await refused_by_cli(tmp_path, alias_bomb())
    assert "YAML aliases expand the document beyond 1,000,000 values" in line


def test_oversized_file_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    from stream_orch.topology.loader import load_topology

    path = tmp_path / "big.yaml"
    path.write_text(MINIMAL + "# " + "x" * (4 * 1024 * 1024) + "\n")
    with pytest.raises(UserError) as info:
        load_topology(path)
    assert str(info.value) == (
        f"{path}: the file has {path.stat().st_size:,} bytes; a topology file may have at most "
        "4,194,304 (4 MiB)"
    )


@pytest.mark.parametrize(
    "tag",
    ["!!python/name:os.system", "!!binary", "!!set", "!!omap", "!!timestamp", "!local", "!<tag:x.org,1:y>"],
)
def test_tags_outside_the_core_schema_are_refused(tag: str) -> None:
    text = MINIMAL.replace("  out: {}", f"  out: {{description: {tag} aGk=}}")
    with pytest.raises(UserError) as info:
        parse_topology(text, "t.yaml", env={})
    assert str(info.value).startswith("t.yaml:4: YAML tag `")
    assert "is not allowed" in str(info.value)


def test_core_schema_tags_anchors_and_merge_keys_still_load() -> None:
    text = MINIMAL.replace(
        "topics:",
        "constants:\n"
        "  base: &base {a: 1, b: two}\n"
        "  merged: {<<: *base, b: 3}\n"
        "  copy: *base\n"
        "  n: !!str 5\n"
        "  f: !!float '2'\n"
        "  s: !!seq [1, !!null '']\n"
        "topics:",
    )
    constants = parse_topology(text, "t.yaml", env={}).spec.constants
    assert constants == {
        "base": {"a": 1, "b": "two"},
        "merged": {"a": 1, "b": 3},
        "copy": {"a": 1, "b": "two"},
        "n": "5",
        "f": 2.0,
        "s": [1, None],
    }


def test_nesting_limit_is_64_levels_including_what_aliases_bring() -> None:
    def nested(depth: int) -> str:  # `x:` is at level 2 (the document, `constants`)
        return MINIMAL.replace("topics:", "constants:\n  x: " + "[" * depth + "]" * depth + "\ntopics:")

    parse_topology(nested(62), "t.yaml", env={})
    with pytest.raises(UserError, match=r"t\.yaml:3: YAML nesting deeper than 64 levels"):
        parse_topology(nested(63), "t.yaml", env={})
    deep = "[" * 40 + "]" * 40
    through_alias = MINIMAL.replace(
        "topics:", f"constants:\n  a: &a {deep}\n  b:\n    c: {'[' * 30}*a{']' * 30}\ntopics:"
    )
    with pytest.raises(UserError, match=r"t.yaml:5: YAML nesting deeper than 64 levels"):
        parse_topology(through_alias, "t.yaml", env={})


def test_aliases_count_every_value_they_repeat() -> None:
    small = alias_bomb(levels=3, width=9)  # 9**4 = 6561 values: an honest amount
    assert len(parse_topology(small, "t.yaml", env={}).spec.constants["a3"]) == 9
    with pytest.raises(UserError, match=r"t.yaml:\d+: YAML aliases expand the document beyond 1,000,000"):
        parse_topology(alias_bomb(levels=6, width=9), "t.yaml", env={})


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("topology: t\nx: *nope\n", 2, "alias `*nope` names no anchor"),
        ("topology: t\n? [a, b]\n: 1\n", 2, "mapping key must be a single value"),
        ("topology: t\n---\ntopology: u\n", 2, "more than one YAML document"),
    ],
)
def test_other_yaml_shapes_are_problems_with_their_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_topology(text, "t.yaml", env={})
    problem = info.value.problems[0]
    assert (problem.line, fragment in problem.message) == (line, True), str(problem)


# Any text at all: the loader answers with a topology or a UserError (one line per problem), never
# another exception. The alphabet is YAML's indicators plus a few plain characters; the budget is
# fixed (derandomized) so the run is the same everywhere.
_YAML_CHARS = "[]{}:,-?&*!|>'\"#%@`\n \t\\ab1.$<~=_"


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.text(alphabet=_YAML_CHARS, max_size=120))
def test_any_text_loads_or_is_a_user_error(text: str) -> None:
    try:
        parse_topology(text, "t.yaml", env={})
    except UserError as exc:
        assert str(exc)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.text(alphabet=_YAML_CHARS, max_size=80))
def test_any_text_inside_a_topology_loads_or_is_a_user_error(text: str) -> None:
    try:
        parse_topology(MINIMAL.replace("  out: {}", "  out: {}\n  x: " + text), "t.yaml", env={})
    except UserError as exc:
        assert str(exc)


@pytest.mark.parametrize("text", ["._", "-_", "+._", "0x_", "0o_", "0b_"])
def test_plain_scalars_that_only_look_like_numbers_stay_text(text: str) -> None:
    """YAML's resolver takes these for numbers and its constructors then fail (a ValueError or
    IndexError traceback from `validate` before): they are text."""
    loaded = parse_topology(MINIMAL.replace("topics:", f"constants:\n  x: {text}\ntopics:"), "t.yaml", env={})
    assert loaded.spec.constants == {"x": text}
