"""The generated reference and JSON Schema stay true to the models."""

from __future__ import annotations

import json

import pytest

from stream_orch.cli.main import main
from stream_orch.topology.docs import REFERENCE_PATH, render_reference, topology_json_schema
from stream_orch.topology.models import TopologySpec
from stream_orch.topology.naming import TOPIC_PATTERN


def test_reference_is_up_to_date() -> None:
    assert REFERENCE_PATH.read_text(encoding="utf-8") == render_reference(), (
        "docs/topology-reference.md is stale: run `python -m stream_orch.topology.docs`"
    )


def test_reference_covers_every_model_and_key() -> None:
    text = render_reference()
    schema = topology_json_schema()
    for name, model in schema["$defs"].items():
        assert f'<a id="{name.lower()}"></a>' in text
        for key in model.get("properties", {}):
            assert f"| `{key}` |" in text, (name, key)
    assert "| `schema` |" in text and "| `as` |" in text and "| `global` |" in text  # YAML spelling


def test_json_schema_uses_yaml_keys_and_accepts_single_route_target() -> None:
    schema = topology_json_schema()
    assert "schema" in schema["$defs"]["TopicSpec"]["properties"]
    assert "global" in schema["$defs"]["TableSpec"]["properties"]
    to = schema["$defs"]["RouteSpec"]["properties"]["to"]
    assert {"type": "string", "pattern": TOPIC_PATTERN, "maxLength": 249} in to["anyOf"]  # one topic
    assert schema["required"] == TopologySpec.model_json_schema()["required"]


def test_schema_command_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == topology_json_schema()


def test_security_page_names_tests_and_settings_that_exist() -> None:
    """docs/security.md backs each rule with a test file and names settings by their variables:
    both must exist, or the page has drifted from the code."""
    import re

    from stream_orch.settings import Settings

    repo = REFERENCE_PATH.parents[1]
    text = (repo / "docs" / "security.md").read_text(encoding="utf-8")
    tests = set(re.findall(r"`(tests/[\w/]+\.py)`", text))
    assert tests and not [t for t in sorted(tests) if not (repo / t).is_file()]
    fields = {f"STREAM_ORCH_{name.upper()}" for name in Settings.model_fields}
    from stream_orch.broker.users import PASSWORD_ENV  # a command's input, not a setting

    # STREAM_ORCH_MASK_KEY: a topology's ${VAR}
    named = set(re.findall(r"STREAM_ORCH_[A-Z_]+", text)) - {"STREAM_ORCH_MASK_KEY", PASSWORD_ENV}
    assert not sorted(named - fields - {"STREAM_ORCH_SSL_"})
