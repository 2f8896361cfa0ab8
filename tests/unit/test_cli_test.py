"""``stream-orch test``: the fraud cases pass; a copy of the topology with one score weight
changed fails with a diff that names the field; a malformed cases file is one line with its
file:line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stream_orch.cli.main import main

REPO = Path(__file__).resolve().parents[2]
FRAUD = REPO / "topologies" / "fraud_detection.yaml"
CASES = REPO / "topologies" / "fraud_detection.cases.yaml"
SCHEMAS = REPO / "schemas"


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main(["test", *map(str, args), "--schemas", str(SCHEMAS)])
    out, err = capsys.readouterr()
    return code, out, err


def test_fraud_cases_pass(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, FRAUD, CASES)
    assert code == 0, out + err
    assert out.count("PASS") == 10 and "FAIL" not in out
    for rule in "abcdefghij":
        assert f"PASS    {rule}. " in out
    assert out.rstrip().endswith("10 cases: 10 passed, 0 failed")


def test_a_changed_score_weight_fails_with_a_readable_diff(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rule = "{name: foreign_country, when: country != home_country, weight: 0.2}"
    text = FRAUD.read_text(encoding="utf-8")
    assert rule in text
    changed = tmp_path / "fraud_detection.yaml"
    shutil.copytree(FRAUD.parent / "models", tmp_path / "models")  # the copy's model file
    changed.write_text(text.replace(rule, rule.replace("0.2}", "0.3}")), encoding="utf-8")
    code, out, err = run(capsys, changed, CASES)
    assert code == 1, out + err
    assert "PASS    a. " in out and "FAIL    g. " in out and "FAIL    h. " in out
    assert "FAIL    j. " in out  # its k-below has the foreign rule only
    assert out.rstrip().endswith("10 cases: 7 passed, 3 failed")
    # the case, where it is written, and per record the field with both values
    assert f"FAIL g. score is the sum of the rules that fire, capped at 1 ({CASES}:" in out
    lines = CASES.read_text(encoding="utf-8").splitlines()
    g_alert = next(i for i, text in enumerate(lines) if "{txn_id: g-alert, score: 0.8" in text)
    assert f"transactions.enriched, record of key A-2 (line {g_alert + 1}):" in out
    assert "      score  expected 0.8\n             got      0.9\n" in out
    assert "fraud.alerts, record 2 of key A-2" in out  # 0.9 -> 1.0 for the critical one
    assert "expected 0.9\n" in out and "got      1.0\n" in out


def test_a_malformed_cases_file_is_one_line_with_file_and_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cases = tmp_path / "bad.cases.yaml"
    cases.write_text(
        "cases:\n"
        "  - name: one\n"
        "    inputs:\n"
        "      - {topic: transactions, value: {txn_id: t1}}\n"
        "      - {topic: transactions, vaule: {txn_id: t2}}\n"
        "    expect:\n"
        "      transactions.enriched: []\n",
        encoding="utf-8",
    )
    code, out, err = run(capsys, FRAUD, cases)
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"stream-orch: error: {cases}:5: unknown key `vaule` in an input (hint: did you mean `value`?)"
    ]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("cases: [\n", 2, "YAML syntax error"),
        ("cases: []\n", 1, "`cases` must be a non-empty list"),
        (
            "cases:\n  - name: x\n    inputs:\n      - {topic: transaction, value: {}}\n    expect: {}\n",
            4,
            "unknown topic `transaction` (hint: did you mean `transactions`?)",
        ),
        (
            "cases:\n  - name: x\n    inputs:\n      - advance: soon\n    expect: {}\n",
            4,
            "'soon' is not a duration",
        ),
        (
            "cases:\n  - name: x\n    inputs:\n      - {advance: 1s}\n    expect:\n      fraud.alert: []\n",
            6,
            "unknown topic `fraud.alert` (hint: did you mean `fraud.alerts`?)",
        ),
        (
            "cases:\n  - name: x\n    inputs:\n      - {topic: customers, value: {}, at: 2026-01-01}\n"
            "    expect: {}\n",
            4,
            "`at` must be epoch ms or an ISO-8601 time with an offset",
        ),
        ("cases:\n  - name: x\n    inputs:\n      - {advance: 1s}\n", 2, "checks nothing"),
    ],
)
def test_cases_file_problems(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, line: int, message: str
) -> None:
    cases = tmp_path / "c.yaml"
    cases.write_text(text, encoding="utf-8")
    code, _out, err = run(capsys, FRAUD, cases)
    assert code == 2
    [printed] = err.splitlines()
    assert printed.startswith(f"stream-orch: error: {cases}:{line}: ") and message in printed, printed


def test_missing_files_and_case_filter(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _out, err = run(capsys, FRAUD, tmp_path / "none.yaml")
    assert code == 2 and err.strip() == f"stream-orch: error: cases file not found: {tmp_path / 'none.yaml'}"
    code, out, _err = run(capsys, FRAUD, CASES, "-k", "velocity")
    assert code == 0 and out.count("PASS") == 1 and "1 case: 1 passed" in out
