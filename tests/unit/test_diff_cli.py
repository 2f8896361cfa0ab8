"""``stream-orch diff`` on two copies of the fraud topology, each beside its own schema folder:
the edits it reports, at their lines; a new required field in a schema exits 1 and names the
field; ``--format json`` keys; usage and configuration errors are one line and exit 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from stream_orch.cli.main import main

REPO = Path(__file__).resolve().parents[2]
FRAUD = REPO / "topologies" / "fraud_detection.yaml"
SCHEMAS = REPO / "schemas"
WEIGHT = "{name: velocity_over_5_per_minute, when: velocity_60s > 5, weight: 0.3}"
ROUTE = "      - when: score >= 0.5\n        to: fraud.review\n"
DELAYS = "delays: [1s, 5s, 15s]"


def _copy(folder: Path, edits: dict[str, str] | None = None) -> Path:
    """The fraud topology in ``folder`` with its own copy of the schemas, ``edits`` applied."""
    folder.mkdir()
    shutil.copytree(SCHEMAS, folder / "schemas")
    text = FRAUD.read_text(encoding="utf-8")
    for old, new in (edits or {}).items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = folder / "fraud_detection.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _add_field(schemas: Path, name: str, field: dict) -> None:
    path = schemas / f"{name}.avsc"
    schema = json.loads(path.read_text(encoding="utf-8"))
    schema["fields"].append(field)
    path.write_text(json.dumps(schema, indent=2), encoding="utf-8")


def _line(path: Path, fragment: str) -> int:
    (line,) = [n for n, row in enumerate(path.read_text().splitlines(), 1) if fragment in row]
    return line


def _cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "stream-orch"), "diff", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


@pytest.fixture()
def versions(tmp_path: Path) -> tuple[Path, Path]:
    old = _copy(tmp_path / "old")
    new = _copy(
        tmp_path / "new",
        {
            WEIGHT: WEIGHT.replace("0.3", "0.4"),
            ROUTE: ROUTE.replace("0.5", "0.6").replace("fraud.review", "[fraud.review, fraud.alerts]"),
            DELAYS: "delays: [1s, 10s, 15s]",
            "# Fraud detection: the reference topology.": "# Fraud detection, edited (a comment: no change).",
        },
    )
    return old, new


def test_the_edits_of_a_fraud_copy_are_reported_at_their_lines(versions: tuple[Path, Path]) -> None:
    old, new = versions
    result = _cli(old, new)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"fraud_detection 1.0.0 ({old}) -> fraud_detection 1.0.0 ({new}): 4 changes"
    weight = _line(new, "velocity_over_5_per_minute")
    route = _line(new, "score >= 0.6")
    edited_route = "route score_transactions #3 (when score >= 0.6)"
    assert lines[1:5] == [
        f"  {new}:{weight}: step score_transactions.score: "
        "rule velocity_over_5_per_minute weight: 0.3 -> 0.4",
        f"  {new}:{route}: {edited_route}: when: score >= 0.5 -> score >= 0.6",
        f"  {new}:{route + 1}: {edited_route}: to added: fraud.alerts",
        f"  {new}:{_line(new, 'delays:')}: score_transactions errors: retry.delays: "
        '["1s","5s","15s"] -> ["1s","10s","15s"]',
    ]
    assert lines[-1] == "schemas: no changes"
    assert result.stderr == ""


def test_a_new_required_field_exits_1_and_names_it(versions: tuple[Path, Path]) -> None:
    old, new = versions
    _add_field(new.parent / "schemas", "transaction", {"name": "device_id", "type": "string"})
    result = _cli(old, new)
    assert result.returncode == 1, result.stdout + result.stderr
    why = "field device_id added without a default (old records do not have it)"
    assert f"transaction: backward incompatible: {why}" in result.stdout
    assert result.stdout.rstrip().endswith("FAIL: transaction not backward compatible")
    # the same change meets forward (old readers skip the new field): exit 0
    assert _cli(old, new, "--compatibility", "forward").returncode == 0
    assert _cli(old, new, "--compatibility", "full").returncode == 1
    assert _cli(old, new, "--compatibility", "none").returncode == 0


def test_a_field_with_a_default_is_compatible_and_still_listed(tmp_path: Path, capsys) -> None:
    old = _copy(tmp_path / "old")
    new = _copy(tmp_path / "new")
    _add_field(new.parent / "schemas", "customer", {"name": "segment", "type": "string", "default": "retail"})
    assert main(["diff", str(old), str(new), "--compatibility", "full"]) == 0
    out = capsys.readouterr().out
    assert "no changes" in out.splitlines()[0]
    assert f"  {new.parent / 'schemas' / 'customer.avsc'}: customer: full compatible (meets full)" in out


def test_json_output_keys(tmp_path: Path, capsys) -> None:
    old = _copy(tmp_path / "old")
    new = _copy(tmp_path / "new", {WEIGHT: WEIGHT.replace("0.3", "0.4")})
    _add_field(new.parent / "schemas", "transaction", {"name": "device_id", "type": "string"})
    assert main(["diff", str(old), str(new), "--format", "json"]) == 1
    document = orjson.loads(capsys.readouterr().out)
    assert sorted(document) == ["changes", "compatibility", "compatible", "new", "old", "schemas"]
    assert (document["compatibility"], document["compatible"]) == ("backward", False)
    assert document["old"] == {
        "file": str(old),
        "topology": "fraud_detection",
        "version": "1.0.0",
        "schemas": str(old.parent / "schemas"),
    }
    (change,) = document["changes"]
    assert change == {
        "kind": "changed",
        "area": "step",
        "subject": "step score_transactions.score",
        "field": "rule velocity_over_5_per_minute weight",
        "old": 0.3,
        "new": 0.4,
        "file": str(new),
        "line": _line(new, "velocity_over_5_per_minute"),
        "message": "step score_transactions.score: rule velocity_over_5_per_minute weight: 0.3 -> 0.4",
    }
    (schema,) = document["schemas"]
    assert schema == {
        "subject": "transaction",
        "old_schema": "transaction",
        "new_schema": "transaction",
        "file": str(new.parent / "schemas" / "transaction.avsc"),
        "used_by": ["topics.transactions"],
        "compatibility": "forward",
        "compatible": False,
        "problems": [
            {
                "direction": "backward",
                "path": "device_id",
                "message": "field device_id added without a default (old records do not have it)",
            }
        ],
    }


def test_a_topic_that_names_another_schema_is_checked_against_the_old_one(tmp_path: Path, capsys) -> None:
    old = _copy(tmp_path / "old")
    new = _copy(tmp_path / "new", {"    schema: transaction\n": "    schema: transaction_v2\n"})
    schemas = new.parent / "schemas"
    v2 = json.loads((schemas / "transaction.avsc").read_text(encoding="utf-8"))
    v2["fields"].append({"name": "device_id", "type": "string"})
    (schemas / "transaction_v2.avsc").write_text(json.dumps(v2), encoding="utf-8")
    assert main(["diff", str(old), str(new)]) == 1
    out = capsys.readouterr().out
    assert "topic transactions: schema: transaction -> transaction_v2" in out
    assert "topic transactions: transaction -> transaction_v2: forward compatible (breaks backward)" in out
    assert "transaction_v2: backward incompatible: field device_id added without a default" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--schemas", "s", "--old-schemas", "t"], "give either --schemas or --old-schemas/--new-schemas"),
        (["--compatibility", "sideways"], "argument --compatibility: invalid choice: 'sideways'"),
        (["--new-schemas", "/nonexistent"], "schema folder /nonexistent (--schemas) does not exist"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(versions: tuple[Path, Path], args, message) -> None:
    old, new = versions
    result = _cli(old, new, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_topology_that_does_not_load_exits_2_with_its_line(versions: tuple[Path, Path]) -> None:
    old, new = versions
    new.write_text(new.read_text().replace("    partitions: 6\n", "    partitions: x\n", 1))
    result = _cli(old, new)
    assert result.returncode == 2
    assert f"{new}:{_line(new, 'partitions: x')}:" in result.stderr and "Traceback" not in result.stderr
    broken = _copy(new.parent.parent / "broken")
    (broken.parent / "schemas" / "customer.avsc").write_text("{not json", encoding="utf-8")
    result = _cli(old, broken)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "customer.avsc: not valid JSON" in result.stderr
    missing = _cli(old, new.parent / "none.yaml")
    assert missing.returncode == 2 and "topology file not found" in missing.stderr
