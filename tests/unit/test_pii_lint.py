"""The PII policy in lint: a field marked `"pii"` in a schema reaching a topic whose policy refuses
it is an error at the line that sends it, through a route, a `set`, a derive, an enrich that
copies a table field, and another node's topic; masked (hash, drop) it passes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from stream_orch.cli.main import main
from stream_orch.topology.lint import lint
from stream_orch.topology.loader import Problem, load_topology, parse_topology

ROOT = Path(__file__).resolve().parents[2]

SCHEMAS = {
    "person": [
        {"name": "id", "type": "string"},
        {"name": "email", "type": ["null", "string"], "default": None, "pii": "direct"},
        {"name": "birth_year", "type": ["null", "int"], "default": None, "pii": "indirect"},
    ],
    "order": [{"name": "order_id", "type": "string"}, {"name": "person_id", "type": "string"}],
    "report": [
        {"name": "id", "type": "string"},
        {"name": "contact", "type": ["null", "string"], "default": None},
        {"name": "email", "type": ["null", "string"], "default": None},
        {"name": "birth_year", "type": ["null", "int"], "default": None},
    ],
    "order_report": [
        {"name": "order_id", "type": "string"},
        {"name": "email", "type": ["null", "string"], "default": None},
        {"name": "contact", "type": ["null", "string"], "default": None},
    ],
}


def _write_schemas(folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    for name, fields in SCHEMAS.items():
        schema = {"type": "record", "name": name.title().replace("_", ""), "fields": fields}
        (folder / f"{name}.avsc").write_text(json.dumps(schema))


def problems(tmp_path: Path, text: str) -> list[Problem]:
    _write_schemas(tmp_path / "schemas")
    loaded = parse_topology(text, tmp_path / "t.yaml")
    return [p for p in lint(loaded) if p.severity == "error"]


def line_of(text: str, marker: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if marker in line)


def topology(
    steps: str = "", target: str = "{topic: report}", report_policy: str = "audience: analysts"
) -> str:
    return f"""\
topology: t
topics:
  people: {{key: id, schema: person}}
  report: {{key: id, schema: report, {report_policy}}}
nodes:
  n:
    input: people
    steps: [{steps}]
    routes:
      - to:
          - {target}  # target
    errors: {{dlq: people.dlq}}
"""


def test_direct_pii_through_a_route_is_refused_at_the_route_line(tmp_path: Path) -> None:
    text = topology()
    found = problems(tmp_path, text)
    assert len(found) == 1, found
    p = found[0]
    assert p.line == line_of(text, "# target")
    assert "field `email` carries direct PII (from `people`.`email`)" in p.message
    assert "reaches topic `report` (pii: pseudonymised, audience: analysts) unmasked" in p.message
    assert "mask" in p.hint


@pytest.mark.parametrize("how", ["hash", "drop"])
def test_masked_direct_pii_passes_an_analysts_topic(tmp_path: Path, how: str) -> None:
    assert problems(tmp_path, topology(f"{{step: mask, fields: {{email: {how}}}}}")) == []


def test_forbidden_refuses_indirect_and_hashed_pii(tmp_path: Path) -> None:
    text = topology("{step: mask, fields: {email: hash}}", report_policy="pii: forbidden")
    found = problems(tmp_path, text)
    leaked = sorted(re.search(r"field `(\w+)`", p.message).group(1) for p in found)  # type: ignore[union-attr]
    assert leaked == ["birth_year", "email"]
    assert any("hashed" in p.message and "`email`" in p.message for p in found)
    dropped = topology(
        "{step: mask, fields: {email: drop, birth_year: drop}}", report_policy="pii: forbidden"
    )
    assert problems(tmp_path, dropped) == []


def test_an_allowed_topic_takes_pii(tmp_path: Path) -> None:
    assert problems(tmp_path, topology(report_policy="pii: allowed")) == []
    assert problems(tmp_path, topology(report_policy="audience: ops")) == []


def test_a_set_that_reads_a_pii_field_leaks_at_the_set_line(tmp_path: Path) -> None:
    text = topology(
        "{step: mask, fields: {email: drop}}",
        target="{topic: report, set: {contact: \"'mailto:' + coalesce(email, '')\"}}",
    )
    text = text.replace("{step: mask, fields: {email: drop}}", "")  # the set reads the raw email
    found = problems(tmp_path, text)
    assert [re.search(r"field `(\w+)`", p.message).group(1) for p in found] == ["contact", "email"]  # type: ignore[union-attr]
    contact = found[0]
    assert contact.line == line_of(text, "# target")
    assert "carries direct PII (from `people`.`email`)" in contact.message


def test_a_set_after_the_mask_reads_the_digest(tmp_path: Path) -> None:
    text = topology("{step: mask, fields: {email: hash}}", target="{topic: report, set: {contact: email}}")
    assert problems(tmp_path, text) == []


def test_a_derive_of_a_pii_field_carries_it(tmp_path: Path) -> None:
    steps = (
        "{step: derive, fields: {contact: \"upper(coalesce(email, ''))\"}}, # derive\n"
        "      {step: mask, fields: {email: drop}}"
    )
    text = topology(steps)
    found = problems(tmp_path, text)
    assert len(found) == 1, found
    assert "field `contact` carries direct PII (from `people`.`email`)" in found[0].message
    assert (
        f"set by derive `upper(coalesce(email, ''))` at line {line_of(text, '# derive')}" in found[0].message
    )
    assert found[0].line == line_of(text, "# target")


def test_an_enrich_that_copies_a_pii_table_field(tmp_path: Path) -> None:
    text = """\
topology: t
topics:
  orders: {key: person_id, schema: order}
  people: {key: id, schema: person, compact: true}
  order.report: {key: order_id, schema: order_report, audience: analysts}
tables:
  people_t: {topic: people, global: true}
nodes:
  n:
    input: orders
    steps:
      - {step: enrich, table: people_t, key: person_id, fields: [email], on_missing: drop}  # enrich
    routes:
      - to: order.report  # target
    errors: {dlq: orders.dlq}
"""
    found = problems(tmp_path, text)
    assert len(found) == 1, found
    assert found[0].line == line_of(text, "# target")
    assert "field `email` carries direct PII (from `people`.`email`)" in found[0].message
    assert f"set by enrich (table `people_t`) at line {line_of(text, '# enrich')}" in found[0].message
    prefixed = text.replace("fields: [email]", "fields: [email], prefix: p_")
    assert problems(tmp_path, prefixed) == []  # `p_email` is not in the report's schema


def test_pii_crosses_a_node_through_a_topic_without_schema(tmp_path: Path) -> None:
    text = """\
topology: t
topics:
  people: {key: id, schema: person}
  people.raw: {key: id}
  report: {key: id, schema: report, audience: analysts}
nodes:
  copy:
    input: people
    routes: [{to: people.raw}]
    errors: {dlq: people.dlq}
  publish:
    input: people.raw
    steps: [{step: derive, fields: {contact: email}}]
    routes:
      - to: report  # target
    errors: {dlq: people.raw.dlq}
"""
    found = problems(tmp_path, text)
    leaked = sorted(re.search(r"field `(\w+)`", p.message).group(1) for p in found)  # type: ignore[union-attr]
    assert leaked == ["contact", "email"]
    assert all(p.line == line_of(text, "# target") for p in found)
    assert all("from `people.raw`.`email`" in p.message for p in found)
    masked = text.replace(
        "    routes: [{to: people.raw}]",
        "    steps: [{step: mask, fields: {email: drop}}]\n    routes: [{to: people.raw}]",
    )
    assert problems(tmp_path, masked) == []


def test_a_python_step_passes_the_fields_it_receives(tmp_path: Path) -> None:
    (tmp_path / "udf.py").write_text("def f(r):\n    return r\n")
    text = topology("{step: python, function: 'udf:f'}")
    assert [re.search(r"field `(\w+)`", p.message).group(1) for p in problems(tmp_path, text)] == ["email"]  # type: ignore[union-attr]


def _fraud_copy(tmp_path: Path, replace: tuple[str, str] | None) -> Path:
    text = (ROOT / "topologies" / "fraud_detection.yaml").read_text()
    if replace is not None:
        assert replace[0] in text
        text = text.replace(*replace)
    path = tmp_path / "fraud.yaml"
    path.write_text(text)
    (tmp_path / "models").symlink_to(ROOT / "topologies" / "models")
    return path


def test_the_fraud_topology_passes(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        ["validate", str(ROOT / "topologies" / "fraud_detection.yaml"), "--schemas", str(ROOT / "schemas")]
    )
    assert capsys.readouterr().out.startswith("OK: fraud_detection")
    assert rc == 0


def test_a_fraud_copy_that_forgets_the_mask_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _fraud_copy(tmp_path, ("fields: {email: hash, name: drop}", "fields: {name: drop}"))
    rc = main(["validate", str(path), "--schemas", str(ROOT / "schemas")])
    out = capsys.readouterr().out.splitlines()
    assert rc == 1
    text = path.read_text().splitlines()
    leaks = [o for o in out if "field `email` carries direct PII" in o]
    # the two analysts' topics, each at the line of its route target
    assert {o.split(":")[1] for o in leaks} == {
        str(i)
        for i, line in enumerate(text, 1)
        if line.strip() in ("- to: transactions.enriched", "to: transactions.approved")
    }


def test_a_pii_record_key_leaks_even_when_the_field_is_masked(tmp_path: Path) -> None:
    """The input is keyed by the e-mail: a record routed without a key field keeps the input's key
    bytes, which no mask of the field changes."""
    text = topology("{step: mask, fields: {email: hash}}", report_policy="audience: analysts")
    text = text.replace("people: {key: id, schema: person}", "people: {key: email, schema: person}")
    text = text.replace("report: {key: id, schema: report,", "report: {schema: report,")
    found = problems(tmp_path, text)
    assert len(found) == 1, found
    assert found[0].line == line_of(text, "# target")
    assert "the record key carries direct PII (from `people`.`email`)" in found[0].message
    assert "unmasked" in found[0].message
    # keyed by the hashed field on the target: the key is the digest
    rekeyed = text.replace("{topic: report}", "{topic: report, key: email}")
    assert problems(tmp_path, rekeyed) == []


def test_a_route_key_naming_a_pii_field_leaks(tmp_path: Path) -> None:
    text = topology("{step: mask, fields: {zip: drop}}", target="{topic: report, key: email}")
    text = text.replace("{step: mask, fields: {zip: drop}}", "{step: derive, fields: {k: email}}")
    text = text.replace("key: email}", "key: k}")
    found = problems(tmp_path, text)
    messages = [p.message for p in found]
    assert any("the record key carries direct PII (from `people`.`email`)" in m for m in messages), messages
    assert any("field `email` carries direct PII" in m for m in messages)


def test_a_pii_attribute_that_is_no_level_is_an_error(tmp_path: Path) -> None:
    SCHEMAS["typo"] = [{"name": "id", "type": "string"}, {"name": "email", "type": "string", "pii": "yes"}]
    try:
        text = topology(report_policy="pii: allowed").replace("schema: person}", "schema: typo}")
        found = problems(tmp_path, text)
    finally:
        del SCHEMAS["typo"]
    assert len(found) == 1, found
    assert found[0].line == line_of(text, "people: {key: id")
    assert 'schema `typo`, field `email`: `"pii": "yes"` is not a PII level' in found[0].message


def test_a_topics_pii_policy_changes_without_a_restart() -> None:
    from stream_orch.topology.models import TopologySpec
    from stream_orch.topology.reloadable import reload_problems

    old = load_topology(ROOT / "topologies" / "fraud_detection.yaml").spec
    doc = old.model_dump(mode="json", by_alias=True)
    doc["topics"]["fraud.review"].update(audience="reviewers", pii="pseudonymised")
    doc["topics"]["transactions.enriched"]["audience"] = None
    assert reload_problems(old, TopologySpec.model_validate(doc)) == []
    doc["topics"]["fraud.review"]["partitions"] = 12
    assert reload_problems(old, TopologySpec.model_validate(doc)) != []
