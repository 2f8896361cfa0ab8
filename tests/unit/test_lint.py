"""Lint and `stream-orch validate`: each kind of problem exits 1 and names its line.

Every ``tests/fixtures/topologies/bad_*.yaml`` is ``good.yaml`` with one defect, marked on
its line by a ``# expect: <text>`` comment; the test checks a problem with that text is
reported on that line.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stream_orch.cli.main import main
from stream_orch.topology.lint import SchemaFields, default_schemas_dir, has_errors, lint
from stream_orch.topology.loader import parse_topology

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
TOPOLOGIES = FIXTURES / "topologies"
SCHEMAS = FIXTURES / "schemas"
BAD = sorted(TOPOLOGIES.glob("bad_*.yaml"))
GOOD = (TOPOLOGIES / "good.yaml").read_text()
_EXPECT = re.compile(r"#\s*expect:\s*(.+?)\s*$")


def expectation(path: Path) -> tuple[int, str]:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = _EXPECT.search(line)
        if match:
            return number, match.group(1)
    raise AssertionError(f"{path} has no `# expect:` marker")


def test_every_kind_of_problem_has_a_fixture() -> None:
    assert len(BAD) >= 20


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem.removeprefix("bad_"))
def test_bad_topology_exits_1_naming_the_line(
    path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_SUCH_STREAM_ORCH_VAR", raising=False)
    line, fragment = expectation(path)
    rc = main(["validate", str(path)])
    out = capsys.readouterr().out.splitlines()
    assert rc == 1
    assert not any(o.startswith("OK:") for o in out)
    at_line = [o for o in out if o.startswith(f"{path}:{line}: ")]
    assert any(fragment in o for o in at_line), f"no `{fragment}` at line {line} in:\n" + "\n".join(out)
    # one line per problem, each with a hint, no traceback
    assert all(re.match(rf"^{re.escape(str(path))}:\d+: .+ \(hint: .+\)$", o) for o in out), out


def test_good_topology_is_ok(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["validate", str(TOPOLOGIES / "good.yaml")])
    assert capsys.readouterr().out == "OK: payments (1 nodes, 4 topics)\n"
    assert rc == 0


def test_reference_topology_validates_clean(capsys: pytest.CaptureFixture[str]) -> None:
    path = ROOT / "topologies" / "fraud_detection.yaml"
    if not path.exists():
        pytest.skip("the reference topology is not written yet")
    rc = main(["validate", str(path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert out.startswith("OK: fraud_detection (")
    assert "warning" not in out


def test_missing_file_is_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["validate", "no/such/topology.yaml"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err == "stream-orch: error: topology file not found: no/such/topology.yaml\n"


def test_schemas_option_and_missing_schema_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "topologies" / "t.yaml"
    path.parent.mkdir()
    path.write_text(GOOD)
    monkeypatch.chdir(tmp_path)  # no ./schemas either
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"no schema folder for {path}: tried {path.parent / 'schemas'} (beside the topology file)" in out
    assert f"{tmp_path / 'schemas'} (./schemas)" in out
    assert main(["validate", str(path), "--schemas", str(SCHEMAS)]) == 0


def test_default_schemas_dir_is_beside_the_topology_file_else_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert default_schemas_dir(TOPOLOGIES / "x.yaml") == TOPOLOGIES / "schemas"
    monkeypatch.chdir(ROOT)
    assert default_schemas_dir(ROOT / "topologies" / "x.yaml") == Path("schemas")


def test_warnings_alone_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "topologies" / "t.yaml"
    path.parent.mkdir()
    path.write_text(GOOD.replace("  velocity: {}\n", "  velocity: {}\n  unused: {}\n"))
    rc = main(["validate", str(path), "--schemas", str(SCHEMAS)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "warning: table `unused` is not used by any step" in out
    assert out.rstrip().endswith("OK: payments (1 nodes, 4 topics)")


def load(text: str):
    return parse_topology(text, TOPOLOGIES / "inline.yaml", env={})


def test_python_step_stops_field_checks() -> None:
    text = GOOD.replace(
        "      - step: filter\n",
        "      - step: python\n        function: mymod:fn\n      - step: filter\n",
    ).replace("when: amount_eur > 0", "when: made_up_by_python > 0")
    text = text.replace("topology: payments\n", "topology: payments\npython_packages: [mymod]\n")
    assert not has_errors(lint(load(text), SCHEMAS))
    assert has_errors(
        lint(load(GOOD.replace("when: amount_eur > 0", "when: made_up_by_python > 0")), SCHEMAS)
    )


def test_allow_cycles_silences_the_cycle() -> None:
    text = GOOD.replace("        to: payments.ok\n", "        to: payments\n")
    assert any("cycle" in p.message for p in lint(load(text), SCHEMAS))
    allowed = text.replace("topology: payments\n", "topology: payments\nallow_cycles: true\n")
    assert not any("cycle" in p.message for p in lint(load(allowed), SCHEMAS))


def test_cycle_through_two_nodes() -> None:
    text = GOOD + (
        "  back:\n    input: payments.ok\n    routes: [{to: payments}]\n    errors: {dlq: payments.dlq}\n"
    )
    cycles = [p for p in lint(load(text), SCHEMAS) if "cycle" in p.message]
    assert len(cycles) == 1
    assert "back" in cycles[0].message and "check" in cycles[0].message


def test_enrich_without_fields_adds_all_row_fields() -> None:
    text = GOOD.replace("        fields: [tier, home_country, email]\n", "        prefix: p_\n").replace(
        "country != home_country", "country != p_home_country"
    )
    problems = [p for p in lint(load(text), SCHEMAS) if p.severity == "error"]
    # `email` is now `p_email`, so masking `email` is the only unknown field
    assert [p.message for p in problems] == ["node `check`, step mask: unknown field `email`"]


def test_enrich_retry_reason_not_retried_is_a_warning() -> None:
    text = GOOD.replace("on: [unknown_customer]", "on: [timeout]")
    problems = lint(load(text), SCHEMAS)
    assert [p.severity for p in problems] == ["warning"]
    assert "unknown_customer" in problems[0].message


def test_problems_are_sorted_by_line_and_carry_hints() -> None:
    text = GOOD.replace("input: payments", "input: nope").replace("table: seen\n", "table: nope\n")
    problems = lint(load(text), SCHEMAS)
    assert [p.line for p in problems] == sorted(p.line for p in problems)
    assert all(p.hint for p in problems)


def test_schema_fields_reads_fields_and_reports_missing(tmp_path: Path) -> None:
    fields = SchemaFields(SCHEMAS)
    assert fields.fields("profile") == ["customer_id", "email", "tier", "home_country"]
    assert fields.problem("nope") is not None and "nope.avsc" in fields.problem("nope")
    (tmp_path / "broken.avsc").write_text("{not json")
    (tmp_path / "ok.avsc").write_text(
        '{"type": "record", "name": "Ok", "fields": [{"name": "a", "type": "int"}]}'
    )
    mixed = SchemaFields(tmp_path)  # one bad file does not hide the good ones
    assert mixed.fields("ok") == ["a"]
    assert mixed.fields("broken") is None
    assert "not a readable" in mixed.problem("broken")
