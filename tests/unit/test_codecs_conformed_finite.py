"""inf and nan never reach a topic, now that the JSON codec leaves the search for them to the
output conformer on topics with a schema (``JsonCodec.encode_conformed``): routed through the
real Router, every value with a non-finite number in a field of the schema, or in a `set` field,
is dead-lettered and nothing of it goes out; every other value goes out as the projection of the
input (a null only where the input had None), JSON-equal; a topic without a schema still gets
the codec's own search."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_orch.codecs import JsonCodec, SchemaRegistry
from stream_orch.codecs.base import NonFiniteNumber
from stream_orch.codecs.conform import output_projection
from stream_orch.runtime.batch import BatchStats, NodeContext
from stream_orch.runtime.output import Outbox, PartitionMap
from stream_orch.runtime.routing import Router
from stream_orch.steps.base import Event
from stream_orch.topology.loader import parse_topology

SCHEMA = {
    "type": "record",
    "name": "Reading",
    "namespace": "test",
    "fields": [
        {"name": "sensor", "type": "string"},
        {"name": "value", "type": "double"},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "samples", "type": {"type": "array", "items": "double"}, "default": []},
        {"name": "limits", "type": {"type": "map", "values": ["null", "float"]}, "default": {}},
        {"name": "peak", "type": ["null", "int", "double"], "default": None},
        {"name": "scaled", "type": ["null", "double"], "default": None},
    ],
}
TOPOLOGY = """
topology: finite
topics:
  raw: {partitions: 1}
  typed: {partitions: 1, schema: reading}
  untyped: {partitions: 1}
nodes:
  n:
    input: raw
    routes:
      - to:
          - typed
          - topic: untyped
      - when: "value == value"
        to:
          - topic: typed
            set: {scaled: "value * 1e300"}
    errors: {dlq: raw.dlq}
"""
_folder = Path(tempfile.mkdtemp(prefix="finite-schemas-"))
(_folder / "reading.avsc").write_text(json.dumps(SCHEMA))
SCHEMAS = SchemaRegistry(_folder)
SPEC = parse_topology(TOPOLOGY, "finite.yaml").spec

number = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e10, max_value=1e10),
    st.integers(-(2**31), 2**31 - 1),
)
values = st.fixed_dictionaries(
    {"sensor": st.just("s1"), "value": number},
    optional={
        "note": st.none(),
        "samples": st.lists(number, max_size=3),
        "limits": st.dictionaries(st.sampled_from("ab"), st.one_of(st.none(), number), max_size=2),
        "peak": st.one_of(st.none(), number),
    },
)


def non_finite(v: Any) -> bool:
    if isinstance(v, float):
        return not math.isfinite(v)
    if isinstance(v, dict):
        return any(non_finite(x) for x in v.values())
    if isinstance(v, list):
        return any(non_finite(x) for x in v)
    return False


def route(value: dict[str, Any]) -> tuple[dict[str, list[bytes]], NodeContext]:
    outbox = Outbox(PartitionMap({t: 1 for t in [*SPEC.topics, "raw.dlq"]}))
    ctx = NodeContext(SPEC.topology, "n", {}, {})
    ev = Event(value, b"s1", b"raw", [], "raw", 0, 0, 1_700_000_000_000, 0, "raw", 0, 0)
    Router(SPEC, "n", SCHEMAS).route([ev], outbox, ctx, BatchStats(), 1)
    got: dict[str, list[bytes]] = {}
    for pending in outbox.take().values():
        for (topic, _partition), records in pending.items():
            got.setdefault(topic, []).extend(v for _, v, _, _ in records)
    return got, ctx


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_no_inf_or_nan_reaches_a_topic_and_the_rest_goes_out_unchanged(value: dict[str, Any]) -> None:
    got, ctx = route(value)
    v = value["value"]
    scaled_bad = isinstance(v, int | float) and v == v and not math.isfinite(v * 1e300)
    if non_finite(value) or (scaled_bad and math.isfinite(v)):
        assert got == {}, "nothing of a value with inf or nan goes out"
        (failure,) = ctx.failures
        # "<topic>.<field>: inf is not a finite number", in a union "expected null or double, got float inf"
        assert failure.reason.startswith("output_schema_violation: "), failure.reason
        assert "not a finite number" in failure.reason or "got float" in failure.reason, failure.reason
        return
    if ctx.failures:  # a number the schema cannot hold (an int peak beyond int, a float limit beyond float)
        assert got == {} and ctx.failures[0].reason.startswith("output_schema_violation")
        return
    project = output_projection(SCHEMA, "typed")
    typed = [orjson.loads(b) for b in got["typed"]]
    assert typed[0] == project(value)
    assert typed[1] == project(value) | {"scaled": float(v) * 1e300}
    assert [orjson.loads(b) for b in got["untyped"]] == [value]


def test_without_a_schema_the_codec_still_searches_and_with_one_it_trusts_the_conformer() -> None:
    codec = JsonCodec()
    bad = {"a": None, "b": [1.0, float("nan")]}
    try:
        codec.encode(bad)
    except NonFiniteNumber as exc:
        assert "b[1]" in str(exc)
    else:
        raise AssertionError("inf/nan passed the codec's own search")
    # what encode_conformed skips: the search (the conformer, routed above, does it)
    assert codec.encode_conformed({"a": None, "b": [1.0]}) == b'{"a":null,"b":[1.0]}'
