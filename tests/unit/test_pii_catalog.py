"""`stream-orch catalog`: the shipped topologies as a Markdown catalog page and as OpenLineage
datasets and jobs (checked against the shapes of OpenLineage's spec: Dataset, DatasetFacet and
the schema, documentation and columnLineage facets), and its errors as one line."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from stream_orch.cli.main import main
from stream_orch.topology.loader import load_topology

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGIES = [
    ROOT / "topologies" / name
    for name in (
        "fraud_detection.yaml",
        "fleet.yaml",
        "inventory.yaml",
        "reconciliation.yaml",
        "orders_to_crm.yaml",
        "payments_to_postgres.yaml",
    )
]
FRAUD = TOPOLOGIES[0]
NAMESPACE = "kafka://broker.example:9092"


def catalog(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    rc = main(["catalog", *args])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert err == ""
    return out


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def declared_topics(paths: list[Path]) -> set[str]:
    return {name for p in paths for name in load_topology(p).spec.topics}


# ------------------------------------------------------------------ markdown


def test_markdown_lists_every_topic_with_its_settings(capsys: pytest.CaptureFixture[str]) -> None:
    page = catalog(capsys, *map(str, TOPOLOGIES))
    headings = re.findall(r"^## (.+)$", page, re.M)
    assert set(headings) - {"Nodes"} == declared_topics(TOPOLOGIES)
    assert len(headings) == len(set(headings))  # a topic of several files is one entry
    spec = load_topology(FRAUD).spec
    for name, topic in spec.topics.items():
        row = next(r for r in page.splitlines() if r.startswith(f"| [{name}]("))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1:4] == [f"`{topic.schema_}`", f"`{topic.key}`", str(topic.partitions)]
        assert cells[4] == ("7d" if topic.retention == 7 * 86_400_000 else "broker default")
        assert cells[6] == (topic.audience or "-")


def _section(page: str, topic: str) -> str:
    return page.split(f"\n## {topic}\n", 1)[1].split("\n## ", 1)[0]


def _row(section: str, field: str) -> list[str]:
    line = next(r for r in section.splitlines() if r.startswith(f"| `{field}` |") and "fraud_detection." in r)
    return [c.strip() for c in line.strip("|").split("|")]


def test_markdown_field_lineage_of_the_fraud_topology(capsys: pytest.CaptureFixture[str]) -> None:
    page = catalog(capsys, str(FRAUD))
    enriched = _section(page, "transactions.enriched")
    assert "audience analysts, PII policy: pseudonymised; PII fields: email (indirect)" in enriched
    route = line_of(FRAUD, "- to: transactions.enriched")
    key = "key from `transactions`.`account_id`"
    writer = f"`fraud_detection.score_transactions` (route 1, {FRAUD}:{route}; {key})"
    assert writer in enriched
    email = _row(enriched, "email")
    assert email[1] == "`customers.clean`.`email` via table `customer_profiles` (hashed)"
    assert email[2] == f"mask hash ({FRAUD}:{line_of(FRAUD, 'fields: {email: hash')})"
    amount_eur = _row(enriched, "amount_eur")
    assert amount_eur[1] == "`transactions`.`amount`<br>`transactions`.`currency`"
    assert amount_eur[2].startswith("derive `amount * rates_to_eur[currency]`")
    assert (
        _row(enriched, "home_country")[1] == "`customers.clean`.`home_country` via table `customer_profiles`"
    )
    assert "`name`" not in enriched  # left out by the schema (and dropped by the mask)
    clean = _section(page, "customers.clean")
    assert _row(clean, "email")[1:3] == ["`customers`.`email`", "copied as read"]
    assert "- read by: `fraud_detection.score_transactions`" in clean
    assert "PII fields: email (direct), name (direct)" in clean
    alerts = _section(page, "fraud.alerts")
    assert _row(alerts, "severity")[2].startswith("set `'critical' if score >= 0.95")


# ------------------------------------------------------------------ OpenLineage JSON


def _is_uri(value: Any) -> bool:
    return isinstance(value, str) and re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:\S+$", value) is not None


def check_facet(facet: Any) -> None:
    """OpenLineage's BaseFacet: `_producer` and `_schemaURL`, both URIs."""
    assert isinstance(facet, dict)
    assert _is_uri(facet["_producer"]) and _is_uri(facet["_schemaURL"]), facet


def check_input_field(item: Any) -> None:
    """ColumnLineageDatasetFacet's InputField: namespace, name, field; transformations typed."""
    assert all(isinstance(item[k], str) and item[k] for k in ("namespace", "name", "field")), item
    for t in item.get("transformations", []):
        assert t["type"] in ("DIRECT", "INDIRECT")
        assert isinstance(t.get("subtype", ""), str) and isinstance(t.get("masking", False), bool)


def check_dataset(ds: Any) -> None:
    assert isinstance(ds["namespace"], str) and isinstance(ds["name"], str)
    for facet in ds.get("facets", {}).values():
        check_facet(facet)
    facets = ds.get("facets", {})
    if "schema" in facets:
        assert facets["schema"]["_schemaURL"].endswith("SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet")
        for f in facets["schema"]["fields"]:
            assert isinstance(f["name"], str) and isinstance(f.get("type", ""), str)
    if "documentation" in facets:
        assert isinstance(facets["documentation"]["description"], str)
    if "columnLineage" in facets:
        lineage = facets["columnLineage"]
        assert lineage["_schemaURL"].endswith(
            "ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet"
        )
        assert isinstance(lineage["fields"], dict)
        for entry in lineage["fields"].values():
            for item in entry["inputFields"]:
                check_input_field(item)
        for item in lineage.get("dataset", []):
            check_input_field(item)


def test_json_follows_openlineage_shapes(capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads(catalog(capsys, *map(str, TOPOLOGIES), "--format", "json", "--namespace", NAMESPACE))
    names = [d["name"] for d in doc["datasets"]]
    assert names == sorted(declared_topics(TOPOLOGIES))
    for ds in doc["datasets"]:
        check_dataset(ds)
        assert ds["namespace"] == NAMESPACE
        for entry in ds["facets"].get("columnLineage", {}).get("fields", {}).values():
            # every input field is a field of a catalogued topic (or of a topic without schema)
            for item in entry["inputFields"]:
                source = next(d for d in doc["datasets"] if d["name"] == item["name"])
                if "schema" in source["facets"]:
                    assert item["field"] in {f["name"] for f in source["facets"]["schema"]["fields"]}, item
    for job in doc["jobs"]:
        assert job["namespace"] and job["name"]
        for facet in job.get("facets", {}).values():
            check_facet(facet)
        for ds in job["inputs"] + job["outputs"]:
            assert set(ds) == {"namespace", "name"}


def test_json_lineage_and_pii_of_the_fraud_topology(capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads(catalog(capsys, str(FRAUD), "--format", "json", "--namespace", NAMESPACE))
    datasets = {d["name"]: d for d in doc["datasets"]}
    enriched = datasets["transactions.enriched"]["facets"]
    (email,) = enriched["columnLineage"]["fields"]["email"]["inputFields"]
    assert (email["name"], email["field"]) == ("customers.clean", "email")
    assert [t["masking"] for t in email["transformations"]] == [True]
    amount = enriched["columnLineage"]["fields"]["amount_eur"]["inputFields"]
    assert {(i["name"], i["field"]) for i in amount} == {
        ("transactions", "amount"),
        ("transactions", "currency"),
    }
    topic = enriched["streamOrch_topic"]
    assert (topic["audience"], topic["piiPolicy"], topic["piiFields"]) == (
        "analysts",
        "pseudonymised",
        {"email": "indirect"},
    )
    assert topic["writers"][0]["job"] == "fraud_detection.score_transactions"
    assert topic["writers"][0]["keyFrom"] == [{"name": "transactions", "field": "account_id"}]
    customers = datasets["customers"]["facets"]["streamOrch_topic"]
    assert customers["compacted"] is True and customers["readers"] == ["fraud_detection.harmonise_customers"]
    assert datasets["transactions"]["facets"]["streamOrch_topic"]["retentionMs"] == 7 * 86_400_000
    jobs = {j["name"]: j for j in doc["jobs"]}
    score = jobs["fraud_detection.score_transactions"]
    assert [i["name"] for i in score["inputs"]] == ["transactions", "customers.clean"]
    assert score["outputs"][-1]["name"] == "transactions.dlq"


def test_json_is_stable(capsys: pytest.CaptureFixture[str]) -> None:
    first = catalog(capsys, *map(str, TOPOLOGIES), "--format", "json")
    again = catalog(capsys, *map(str, TOPOLOGIES), "--format", "json")
    assert first == again
    assert json.loads(first)["datasets"][0]["namespace"] == "kafka://127.0.0.1:9092"  # the default setting


# ------------------------------------------------------------------ errors


def _one_line_error(capsys: pytest.CaptureFixture[str], args: list[str], rc: int) -> str:
    assert main(["catalog", *args]) == rc
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_missing_file_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = _one_line_error(capsys, [str(tmp_path / "nope.yaml")], 2)
    assert "topology file not found" in line and "nope.yaml" in line


def test_a_missing_schema_folder_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = _one_line_error(capsys, [str(FRAUD), "--schemas", str(tmp_path / "none")], 2)
    assert "--schemas" in line and "none" in line


def test_the_same_topology_twice_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    line = _one_line_error(capsys, [str(FRAUD), str(FRAUD)], 2)
    assert "topology `fraud_detection`" in line


def test_a_topology_with_lint_errors_is_not_catalogued(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = FRAUD.read_text().replace("fields: {email: hash, name: drop}", "fields: {name: drop}")
    bad = tmp_path / "fraud.yaml"
    bad.write_text(text)
    (tmp_path / "models").symlink_to(ROOT / "topologies" / "models")
    assert main(["catalog", str(bad), "--schemas", str(ROOT / "schemas")]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err and all(re.match(rf"^{re.escape(str(bad))}:\d+: ", line) for line in err.splitlines())
    assert "field `email` carries direct PII" in err


def test_a_topic_shared_by_two_files_is_one_entry_with_both_sides(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "schemas").mkdir()
    fields = [{"name": "id", "type": "string"}, {"name": "email", "type": "string", "pii": "direct"}]
    (tmp_path / "schemas" / "person.avsc").write_text(
        json.dumps({"type": "record", "name": "P", "fields": fields})
    )
    (tmp_path / "a.yaml").write_text(
        "topology: a\ntopics:\n  people: {schema: person}\n  mid: {}\n"
        "nodes:\n  copy: {input: people, routes: [{to: mid}], errors: {dlq: people.dlq}}\n"
    )
    (tmp_path / "b.yaml").write_text(
        "topology: b\ntopics:\n  mid: {}\n  out: {}\n"
        "nodes:\n  pass: {input: mid, routes: [{to: out}], errors: {dlq: mid.dlq}}\n"
    )
    files = [str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")]
    doc = json.loads(catalog(capsys, *files, "--format", "json"))
    topics = {d["name"]: d["facets"]["streamOrch_topic"] for d in doc["datasets"]}
    assert sorted(topics) == ["mid", "out", "people"]
    assert [w["job"] for w in topics["mid"]["writers"]] == ["a.copy"]
    assert topics["mid"]["readers"] == ["b.pass"] and topics["mid"]["declaredIn"] == files
    # the PII crosses the files: `out` carries the e-mail that a.copy wrote to `mid`
    assert topics["out"]["piiFields"] == {"email": "direct"}
    lineage = {d["name"]: d["facets"].get("columnLineage") for d in doc["datasets"]}
    (source,) = lineage["out"]["fields"]["email"]["inputFields"]
    assert (source["name"], source["field"]) == ("mid", "email")
