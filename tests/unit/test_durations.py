"""Durations: a topology file writes them with a unit (a bare number is an error with a hint, 0
aside); models built in Python take milliseconds; a negative one says so; a dumped spec reloads."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from pydantic import TypeAdapter, ValidationError

from stream_orch.topology.durations import DurationMs, format_duration_ms, parse_duration_ms
from stream_orch.topology.loader import SpecError, parse_topology
from stream_orch.topology.models import StepSpec, WindowStep

ROOT = Path(__file__).resolve().parents[2]

SESSION = """\
topology: t
topics:
  scans: {partitions: 1, key: parcel_id}
tables:
  sessions: {}
nodes:
  n:
    input: scans
    steps:
      - step: window
        table: sessions
        key: parcel_id
        kind: session
        gap: GAP
        as: scans
    routes: [{to: scans}]
    errors: {dlq: scans.dlq}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_topology(text, "t.yaml", env={})
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ("2", "did you mean `2s`, `2m` or `2h`? (`2ms` for milliseconds)"),
        ("48", "did you mean `48s`, `48m` or `48h`?"),
        ("2.5", "did you mean `2.5s`"),
        ("'2'", "did you mean `2s`"),
        ("1000", "did you mean `1000ms` (`1s`)?"),
        ("1500", "did you mean `1500ms`?"),
    ],
)
def test_a_bare_number_in_a_file_is_an_error_with_its_line_and_a_hint(value: str, hint: str) -> None:
    [line] = problems(SESSION.replace("GAP", value))
    assert line.startswith("t.yaml:14: nodes.n.steps[0].gap: ")
    assert "has no unit" in line and hint in line


@pytest.mark.parametrize("value", ["2s", "1500ms", "0", "'0'", "0s"])
def test_a_duration_with_a_unit_or_zero_loads(value: str) -> None:
    text = SESSION.replace("gap: GAP", "gap: 2s\n        grace: " + value)
    step = parse_topology(text, "t.yaml", env={}).spec.nodes["n"].steps[0]
    assert isinstance(step, WindowStep)
    assert step.gap == 2000 and step.grace == {"2s": 2000, "1500ms": 1500}.get(value, 0)


def test_the_env_default_is_a_bare_number_too() -> None:
    [line] = problems(SESSION.replace("GAP", "${GAP:2}"))
    assert "`2` has no unit" in line


@pytest.mark.parametrize("value", ["-1", "-5s", "'-5s'", "-0.5m"])
def test_a_negative_duration_says_it_cannot_be_negative(value: str) -> None:
    [line] = problems(SESSION.replace("GAP", value))
    assert "a duration cannot be negative" in line
    assert "not a duration" not in line


def test_python_built_models_take_milliseconds() -> None:
    step = TypeAdapter(StepSpec).validate_python(
        {"step": "window", "table": "w", "key": "k", "kind": "session", "gap": 2, "as": "n"}
    )
    assert isinstance(step, WindowStep) and step.gap == 2
    assert parse_duration_ms(1000) == 1000
    with pytest.raises(ValidationError, match="cannot be negative"):
        TypeAdapter(DurationMs).validate_python(-1)
    with pytest.raises(ValidationError, match="cannot be negative"):
        TypeAdapter(DurationMs).validate_python("-3s")


def test_a_spec_dumped_to_json_loads_again_with_the_same_durations(tmp_path: Path) -> None:
    """What the benchmark harness does: dump a loaded spec as JSON and run that file."""
    for path in [ROOT / "topologies" / "reconciliation.yaml", ROOT / "benchmarks/topologies/window.yaml"]:
        spec = parse_topology(path.read_text(), path, env={}).spec
        data = spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
        again = parse_topology(orjson.dumps(data).decode(), tmp_path / "x.json", env={}).spec
        assert again.model_dump() == spec.model_dump()  # (not ==: the folder each was read from differs)


@pytest.mark.parametrize(
    ("ms", "text"), [(0, "0s"), (1, "1ms"), (1500, "1500ms"), (60_000, "1m"), (86_400_000, "1d")]
)
def test_format_duration_ms(ms: int, text: str) -> None:
    assert format_duration_ms(ms) == text
    assert parse_duration_ms(text) == ms
