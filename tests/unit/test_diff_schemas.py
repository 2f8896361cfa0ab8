"""topology/diff_schemas.py: which schemas count as changed, and for whom."""

from __future__ import annotations

import json
from pathlib import Path

from stream_orch.topology.diff_schemas import schema_changes, schemas_used
from stream_orch.topology.loader import parse_topology

TOPOLOGY = """\
topology: t
constants:
  schema: not_a_schema_name
topics:
  a: {schema: s1}
  b: {}
nodes:
  n:
    input: a
    steps:
      - step: validate
        schema: s2
    routes:
      - to: b
"""
S1 = {"type": "record", "name": "S1", "fields": [{"name": "x", "type": "int"}]}
S2 = {"type": "record", "name": "S2", "fields": [{"name": "y", "type": "string"}]}


def _folder(path: Path, schemas: dict[str, dict]) -> Path:
    path.mkdir()
    for name, schema in schemas.items():
        (path / f"{name}.avsc").write_text(json.dumps(schema, indent=4), encoding="utf-8")
    return path


def test_every_place_that_names_a_schema_counts_but_constants():
    loaded = parse_topology(TOPOLOGY, "t.yaml")
    assert schemas_used(loaded) == {"s1": ["topics.a"], "s2": ["nodes.n.steps.0"]}


def test_only_a_schema_whose_definition_changed_is_reported(tmp_path: Path):
    loaded = parse_topology(TOPOLOGY, "t.yaml")
    old = _folder(tmp_path / "old", {"s1": S1, "s2": S2, "unused": S1})
    # s1 rewritten with its keys in another order: no change; s2 gains a field; unused changes
    s1 = {"fields": S1["fields"], "name": "S1", "type": "record"}
    s2 = {**S2, "fields": [*S2["fields"], {"name": "z", "type": "long"}]}
    new = _folder(tmp_path / "new", {"s1": s1, "s2": s2, "unused": S2})
    (change,) = schema_changes(loaded, loaded, old, new)
    assert (change.subject, change.used_by, change.compatibility) == ("s2", ["nodes.n.steps.0"], "forward")
    assert [str(i) for i in change.breaks("backward")] == [
        "backward incompatible: field z added without a default (old records do not have it)"
    ]
    assert change.breaks("forward") == [] and change.breaks("none") == []
