"""``stream-orch test`` on the fleet topology's cases: they pass as shipped, and a copy of the
topology escalating after 6 minutes instead of 5 fails exactly the cases with a critical."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_orch.cli.main import main

REPO = Path(__file__).resolve().parents[2]
FLEET = REPO / "topologies" / "fleet.yaml"
CASES = REPO / "topologies" / "fleet.cases.yaml"
SCHEMAS = REPO / "schemas"


def run(capsys: pytest.CaptureFixture[str], topology: Path) -> tuple[int, str]:
    code = main(["test", str(topology), str(CASES), "--schemas", str(SCHEMAS)])
    out, err = capsys.readouterr()
    return code, out + err


def test_fleet_cases_pass(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, FLEET)
    assert code == 0, out
    assert out.rstrip().endswith("5 cases: 5 passed, 0 failed"), out


def test_a_later_escalation_fails_the_critical_cases(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = FLEET.read_text(encoding="utf-8")
    assert "critical_after_ms: 300000" in text
    changed = tmp_path / "fleet.yaml"
    changed.write_text(
        text.replace("critical_after_ms: 300000", "critical_after_ms: 360000"), encoding="utf-8"
    )
    code, out = run(capsys, changed)
    assert code == 1, out
    assert "FAIL    b. " in out and "FAIL    c. " in out and "PASS    a. " in out, out
    assert "fleet.critical, record 1 of key V-0002/battery" in out, out  # later: 13 readings, not 11
    assert "fleet.critical: missing record 1 of key V-0003/tyre_pressure" in out, out  # 330 s: none
