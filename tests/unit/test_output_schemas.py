"""Outputs match their schemas, checked twice (issue 12, item 1): lint finds `set` fields and
required fields the schema and the route disagree on, with the line and a did-you-mean hint; at
run time every output is projected, coerced to the schema's types and checked, and a record
that cannot be written goes to the DLQ as ``output_schema_violation: <topic>.<field>: ...``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fastavro
import orjson
import pytest

from stream_orch.cli.main import main
from stream_orch.codecs import AvroCodec, SchemaRegistry
from stream_orch.codecs.conform import OutputSchemaViolation, field_conformer, output_projection
from stream_orch.observability.metrics import label_code
from stream_orch.reliability import headers as H
from stream_orch.runtime.batch import BatchStats, NodeContext
from stream_orch.runtime.failures import FailureRouter
from stream_orch.runtime.output import Outbox, PartitionMap
from stream_orch.runtime.routing import Router
from stream_orch.steps.base import Event
from stream_orch.topology.lint import lint
from stream_orch.topology.loader import parse_topology

REPO = Path(__file__).resolve().parents[2]
FRAUD = REPO / "topologies" / "fraud_detection.yaml"

READING = {
    "type": "record",
    "name": "Reading",
    "namespace": "test",
    "fields": [
        {"name": "sensor", "type": "string"},
        {"name": "value", "type": "double"},
        {"name": "count", "type": "long"},
        {"name": "unit", "type": {"type": "enum", "name": "Unit", "symbols": ["C", "F"]}},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "samples", "type": {"type": "array", "items": "double"}, "default": []},
        {"name": "limits", "type": {"type": "map", "values": ["null", "float"]}, "default": {}},
        {"name": "peak", "type": ["null", "int", "double"], "default": None},
    ],
}

TOPOLOGY = """
topology: sensors
topics:
  readings.raw: {partitions: 1}
  readings: {partitions: 1, key: sensor, schema: reading}
  readings.avro: {partitions: 1, key: sensor, schema: reading, format: avro}
nodes:
  n:
    input: readings.raw
    routes:
      - to:
          - topic: readings
            set: {unit: "'C' if value < 100 else 'X'"}
          - topic: readings.avro
            set: {unit: "'F'"}
    errors: {dlq: readings.dlq}
"""


@pytest.fixture
def schemas(tmp_path: Path) -> SchemaRegistry:
    folder = tmp_path / "schemas"
    folder.mkdir()
    (folder / "reading.avsc").write_text(json.dumps(READING))
    return SchemaRegistry(folder)


def event(value: dict[str, Any], offset: int = 0) -> Event:
    return Event(
        value, b"s1", b"raw", [], "readings.raw", 0, offset, 1_700_000_000_000,
        0, "readings.raw", 0, offset,
    )  # fmt: skip


def route(schemas: SchemaRegistry, *events: Event) -> tuple[dict[str, list[Any]], NodeContext, Outbox]:
    spec = parse_topology(TOPOLOGY, "sensors.yaml").spec
    outbox = Outbox(PartitionMap({t: 1 for t in [*spec.topics, "readings.dlq"]}))
    ctx = NodeContext(spec.topology, "n", {}, {})
    Router(spec, "n", schemas).route(list(events), outbox, ctx, BatchStats(), 1)
    got: dict[str, list[Any]] = {}
    for pending in outbox.take().values():
        for (topic, _partition), records in pending.items():
            got.setdefault(topic, []).extend(v for _, v, _, _ in records)
    return got, ctx, outbox


# --------------------------------------------------------------------------- run time


def test_an_int_where_the_schema_says_double_goes_out_as_a_double(schemas: SchemaRegistry) -> None:
    got, ctx, _ = route(schemas, event({"sensor": "s1", "value": 21, "count": 3, "extra": "x"}))
    assert not ctx.failures
    (raw,) = got["readings"]
    assert raw == b'{"sensor":"s1","value":21.0,"count":3,"unit":"C"}'  # 21 -> 21.0, extra left out
    (avro,) = got["readings.avro"]
    assert AvroCodec(schemas.plain("reading")).decode(avro) == {
        "sensor": "s1", "value": 21.0, "count": 3, "unit": "F", "note": None, "samples": [], "limits": {},
        "peak": None,
    }  # fmt: skip


def test_values_that_cannot_be_written_are_dead_lettered_naming_topic_and_field(
    schemas: SchemaRegistry,
) -> None:
    events = [
        event({"sensor": "s1", "value": "hot", "count": 1}, 0),  # a string in a double
        event({"sensor": "s1", "value": 120.0, "count": 1}, 1),  # `set` gives unit 'X'
        event({"sensor": "s1", "value": 1.0}, 2),  # a required field missing
        event({"sensor": "s1", "value": 1.0, "count": 1.5}, 3),  # not a whole number for a long
        event({"sensor": "s1", "value": 1.0, "count": 2**63}, 4),  # out of the long range
        event({"sensor": "s1", "value": 1.0, "count": 1, "samples": [1, "x"]}, 5),
        event({"sensor": "s1", "value": 1.0, "count": 1, "limits": {"a": "b"}}, 6),
        event({"sensor": "s1", "value": 2, "count": 2.0, "samples": [1, 2.5], "peak": 7}, 7),  # good
    ]
    got, ctx, _ = route(schemas, *events)
    assert [f.reason for f in ctx.failures] == [
        "output_schema_violation: readings.value: expected double, got str 'hot'",
        "output_schema_violation: readings.unit: expected one of C, F, got str 'X'",
        "output_schema_violation: readings.count: missing (expected long)",
        "output_schema_violation: readings.count: expected long, got float 1.5",
        f"output_schema_violation: readings.count: {2**63} is out of the long range",
        "output_schema_violation: readings.samples[1]: expected double, got str 'x'",
        "output_schema_violation: readings.limits['a']: expected null or float, got str 'b'",
    ]
    assert all(isinstance(f.error, OutputSchemaViolation) for f in ctx.failures)
    # nothing of a rejected event went out, to any of its topics
    assert [orjson.loads(v) for v in got["readings"]] == [
        {"sensor": "s1", "value": 2.0, "count": 2, "unit": "C", "samples": [1.0, 2.5], "peak": 7}
    ]
    assert len(got["readings.avro"]) == 1


def test_the_dlq_record_has_the_full_text_and_the_metric_label_only_the_code(
    schemas: SchemaRegistry,
) -> None:
    spec = parse_topology(TOPOLOGY, "sensors.yaml").spec
    _, ctx, outbox = route(schemas, event({"sensor": "s1", "value": "hot", "count": 1}))
    stats = BatchStats()
    FailureRouter(spec, "n").route(ctx.failures, outbox, stats, 2)
    (dlq,) = outbox.take()[0][("readings.dlq", 0)]
    headers = dict(dlq[3])
    reason = "output_schema_violation: readings.value: expected double, got str 'hot'"
    assert headers[H.ERROR_REASON] == reason.encode()
    assert headers[H.ERROR_CLASS] == b"OutputSchemaViolation"
    assert dlq[1] == b"raw"  # the original bytes
    assert dict(stats.dead_lettered) == {("output_schema_violation", "route"): 1}
    assert label_code(reason) == "output_schema_violation"


def test_the_fraud_outputs_still_share_bytes_and_pass_unchanged() -> None:
    """The reference topology's outputs are all valid: the check changes no byte."""
    from tests.unit.test_runtime_routing import event as fraud_event
    from tests.unit.test_runtime_routing import outputs, scored
    from tests.unit.test_runtime_routing import route as fraud_route

    by_task, ctx, _, _ = fraud_route(fraud_event(scored(0.97, amount_eur=20000.0)))
    assert not ctx.failures
    got = outputs(by_task)
    alert = orjson.loads(got["fraud.alerts"][0][3])
    assert alert["severity"] == "critical" and alert["score"] == 0.97
    assert orjson.loads(got["account.actions"][0][3])["action"] == "freeze"


# --------------------------------------------------------------------------- the conformer


def test_projection_keeps_absent_optional_fields_absent_and_coerces_in_unions() -> None:
    project = output_projection(READING, "t")
    value = {"sensor": "a", "value": 1.5, "count": 1, "unit": "F", "peak": 3}
    assert project(value) == value  # 3 stays an int: `int` is a branch of the union
    out = project({**value, "peak": 3.0, "count": True and 1})
    assert out["peak"] == 3.0 and out["peak"].__class__ is float
    with pytest.raises(OutputSchemaViolation, match=r"^t\.peak: expected null or int or double, got str"):
        project({**value, "peak": "3"})
    with pytest.raises(OutputSchemaViolation, match=r"^t\.count: expected long, got bool True"):
        project({**value, "count": True})


def test_field_conformer_only_checks_the_named_fields_in_place() -> None:
    conform = field_conformer(READING, "t", ["value", "not_a_field"])
    assert conform is not None
    out: dict[str, Any] = {"value": 3, "sensor": 5}
    conform(out)
    assert out == {"value": 3.0, "sensor": 5}
    assert field_conformer(READING, "t", ["nope"]) is None


def test_a_coerced_record_is_what_fastavro_accepts() -> None:
    parsed = fastavro.parse_schema(READING)
    out = output_projection(READING, "t")({"sensor": "a", "value": 1, "count": 2.0, "unit": "C"})
    fastavro.validation.validate(out, parsed, raise_errors=True)


# --------------------------------------------------------------------------- lint


def misspelled(tmp_path: Path) -> tuple[Path, int]:
    text = FRAUD.read_text()
    assert '              severity: "' in text
    path = tmp_path / "fraud.yaml"
    path.write_text(text.replace('              severity: "', '              severty: "'))
    line = next(n for n, t in enumerate(path.read_text().splitlines(), 1) if "severty:" in t)
    return path, line


def test_a_misspelled_set_field_is_an_error_at_its_line_with_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, line = misspelled(tmp_path)
    assert main(["validate", str(path), "--schemas", str(REPO / "schemas")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert (
        f"{path}:{line}: node `score_transactions`, route 2: `set` field `severty` is not in schema "
        "`fraud_alert` of topic `fraud.alerts` (hint: did you mean `severity`?)"
    ) in out
    # and the field it should have provided is named too, at the route target's line
    missing = [o for o in out if "lack required field `severity`" in o]
    assert missing and "(hint: `set` writes `severty`: did you mean `severity`?)" in missing[0]
    target_line = int(missing[0].split(":")[1])
    assert target_line < line and "topic: fraud.alerts" in path.read_text().splitlines()[target_line - 1]


def test_run_refuses_the_same_topology(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, line = misspelled(tmp_path)
    assert main(["run", str(path), "--schemas", str(REPO / "schemas")]) == 1
    assert f"{path}:{line}: " in capsys.readouterr().err


def lint_text(text: str, schemas: Path) -> list[str]:
    return [str(p) for p in lint(parse_topology(text, schemas.parent / "t.yaml", env={}), schemas)]


def test_required_fields_nothing_provides_and_constant_set_values_of_the_wrong_type(tmp_path: Path) -> None:
    folder = tmp_path / "schemas"
    folder.mkdir()
    (folder / "reading.avsc").write_text(json.dumps(READING))
    (folder / "raw.avsc").write_text(
        json.dumps({"type": "record", "name": "Raw", "fields": [{"name": "sensor", "type": "string"}]})
    )
    text = """
topology: sensors
topics:
  raw: {partitions: 1, schema: raw}
  readings: {partitions: 1, schema: reading}
nodes:
  n:
    input: raw
    steps:
      - step: derive
        fields: {value: "1.5"}
    routes:
      - to:
          - topic: readings
            set:
              unit: "'K'"
              count: "1"
    errors: {dlq: raw.dlq}
"""
    problems = lint_text(text, folder)
    assert problems == [
        f"{tmp_path}/t.yaml:16: node `n`, route 1: `set` field `unit` of `readings`: expected one of C, F, "
        "got str 'K' (hint: write a value of the field's type in the schema)",
    ]
    problems = lint_text(text.replace('              count: "1"\n', ""), folder)
    assert len(problems) == 2
    assert problems[0] == (
        f"{tmp_path}/t.yaml:14: node `n`, route 1: records for `readings` lack required field `count` of "
        "schema `reading` (hint: add it with `set: {count: ...}`, compute it in an earlier step, or give it "
        "a default in the schema (known fields here: sensor, value))"
    )


def test_the_reference_topology_provides_every_required_field() -> None:
    from stream_orch.topology.loader import load_topology

    assert lint(load_topology(FRAUD), REPO / "schemas") == []


def test_a_key_field_the_output_schema_lacks_is_read_from_the_record(schemas: SchemaRegistry) -> None:
    spec = parse_topology(
        TOPOLOGY.replace("key: sensor, schema: reading}", "key: site, schema: reading}"), "s.yaml"
    ).spec
    outbox = Outbox(PartitionMap({t: 1 for t in spec.topics}))
    ctx = NodeContext(spec.topology, "n", {}, {})
    value = {"sensor": "s1", "site": "north", "value": 1.0, "count": 1}
    Router(spec, "n", schemas).route([event(value)], outbox, ctx, BatchStats(), 1)
    keys = {
        topic: records[0][0] for pending in outbox.take().values() for (topic, _), records in pending.items()
    }
    assert keys == {"readings": b"north", "readings.avro": b"s1"}  # not None: `site` is no output field


# --------------------------------------------------------------------------- non-finite numbers

INF, NAN = float("inf"), float("nan")
GOOD = {"sensor": "a", "value": 1.5, "count": 1, "unit": "F"}


@pytest.mark.parametrize(
    ("change", "path", "detail"),
    [
        ({"value": INF}, "value", "inf is not a finite number"),
        ({"value": -INF}, "value", "-inf is not a finite number"),
        ({"value": NAN}, "value", "nan is not a finite number"),
        ({"value": 10**400}, "value", "is too large for a double"),
        ({"samples": [1.0, NAN]}, "samples[1]", "nan is not a finite number"),
        ({"samples": [1, INF]}, "samples[1]", "inf is not a finite number"),
        ({"limits": {"a": 1e39}}, "limits['a']", "expected null or float, got float 1e+39"),
        ({"limits": {"a": NAN}}, "limits['a']", "expected null or float, got float nan"),
        ({"peak": INF}, "peak", "expected null or int or double, got float inf"),
    ],
)
def test_a_non_finite_number_is_an_output_schema_violation_never_a_null(
    change: dict[str, Any], path: str, detail: str
) -> None:
    """orjson writes inf and nan as null, also into a required double (issue 19, item 4)."""
    with pytest.raises(OutputSchemaViolation) as info:
        output_projection(READING, "t")({**GOOD, **change})
    assert info.value.field == path
    assert detail in info.value.detail


def test_a_set_field_that_is_not_finite_is_an_output_schema_violation() -> None:
    conform = field_conformer(READING, "t", ["value"])
    assert conform is not None
    with pytest.raises(OutputSchemaViolation, match=r"^t\.value: inf is not a finite number"):
        conform({"value": INF})


def test_the_router_dead_letters_a_non_finite_output_with_or_without_a_schema(
    schemas: SchemaRegistry,
) -> None:
    got, ctx, _ = route(schemas, event({**GOOD, "value": 1e308 * 10}), event(GOOD, 1))
    assert [f.reason for f in ctx.failures] == [
        "output_schema_violation: readings.value: inf is not a finite number"
    ]
    assert [orjson.loads(v)["value"] for v in got["readings"]] == [1.5]  # no null went out
    # an output topic without a schema: the JSON codec finds it
    spec = parse_topology(
        TOPOLOGY.replace("- topic: readings.avro\n            set: {unit: \"'F'\"}", "- topic: readings.raw"),
        "sensors.yaml",
    ).spec
    outbox = Outbox(PartitionMap({t: 1 for t in spec.topics}))
    ctx = NodeContext(spec.topology, "n", {}, {})
    value = {**GOOD, "extra": {"x": [1.0, NAN]}}  # not in the schema: only the raw output has it
    Router(spec, "n", schemas).route([event(value)], outbox, ctx, BatchStats(), 1)
    assert [f.reason for f in ctx.failures] == [
        "output_schema_violation: readings.raw.extra.x[1]: nan is not a finite number"
    ]
    assert outbox.take() == {}  # none of the event's outputs went out
