"""Property: whatever bytes, keys and headers arrive on a node's input and retry topics, every
record ends processed, dead-lettered with a reason, or dropped; nothing raises and nothing is
lost. Through the worker's own record path (the test driver runs the node's ``NodePipeline``:
decode, steps, routing, retry tiers, DLQ) on a small topology with a schema, for a JSON and an
Avro input. A fixed, derandomised budget keeps it a few seconds and the same in CI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from stream_orch.codecs import codec_for
from stream_orch.codecs.schemas import SchemaRegistry
from stream_orch.reliability import headers as H
from stream_orch.testing import TopologyTestDriver
from stream_orch.topology.models import TopologySpec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SCHEMAS = SchemaRegistry(FIXTURES / "schemas")
T0 = 1_767_225_600_000
INPUT = "payments"
TOPICS = [INPUT, "payments.retry.1", "payments.retry.2"]  # good.yaml: delays [1s, 10s]
OUTPUTS = ["payments.flagged", "payments.ok"]  # one of the two routes takes every processed record


def _spec(fmt: str) -> TopologySpec:
    """tests/fixtures/topologies/good.yaml (normalize, validate, dedupe, enrich with retries,
    derive, filter, aggregate, score, mask; a route per outcome), its input in ``fmt``."""
    doc = YAML(typ="safe").load((FIXTURES / "topologies" / "good.yaml").read_text())
    doc["topics"][INPUT]["format"] = fmt
    return TopologySpec.model_validate(doc)


SPECS = {fmt: _spec(fmt) for fmt in ("json", "avro")}
ENGINE_HEADERS = [
    H.ERROR_TOPIC, H.ERROR_PARTITION, H.ERROR_OFFSET, H.ERROR_TIMESTAMP, H.ERROR_FIRST_FAILURE,
    H.ERROR_ATTEMPTS, H.ERROR_REASON, H.RETRY_DUE, H.RETRY_ATTEMPT, H.SRC_TOPIC,
]  # fmt: skip

numbers = st.integers(min_value=-(2**70), max_value=2**70).map(lambda n: str(n).encode())
header_values = st.one_of(
    st.binary(max_size=24),
    numbers,
    st.integers(min_value=T0 - 20_000, max_value=T0 + 20_000).map(lambda n: str(n).encode()),
    st.sampled_from([b"", b"0", b"1", b"payments", b"payments.retry.1", b"9" * 400, b" 1", b"1e3"]),
)
headers = st.just([]) | st.lists(
    st.tuples(st.one_of(st.sampled_from(ENGINE_HEADERS), st.text(max_size=8)), header_values), max_size=6
)  # half without headers, so that records get through to the steps too
keys = st.one_of(st.none(), st.binary(max_size=12), st.sampled_from([b"A-1", b"A-2", b"C-1"]))
payment = st.fixed_dictionaries(
    {
        "payment_id": st.sampled_from(["p1", "p2", "p3"]) | st.text(max_size=6),
        "account_id": st.sampled_from(["A-1", "A-2"]),
        "customer_id": st.sampled_from(["C-1", "C-2", "C-9"]),  # C-9 has no profile: retried
        "amount": st.sampled_from([1.0, 20.0, 5e3]) | st.floats(allow_nan=True, allow_infinity=True),
        "currency": st.sampled_from(["EUR", "USD", "usd", "GBP", ""]),
        "country": st.sampled_from(["DE", "NL"]),
        "ts": st.just(T0) | st.integers(min_value=0, max_value=2**62),
    }
)
int64 = st.integers(-(2**63), 2**63 - 1)  # what orjson writes
json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=6) | int64,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def _values(fmt: str) -> st.SearchStrategy[bytes | None]:
    if fmt == "avro":
        encode = codec_for(SPECS["avro"].topics[INPUT], SCHEMAS).encode
        valid = payment.filter(lambda p: abs(p["amount"]) != float("inf")).map(encode)
        cut = st.tuples(valid, st.integers(min_value=0, max_value=40)).map(lambda vc: vc[0][: vc[1]])
        return st.one_of(valid, valid, st.none(), st.binary(max_size=64), cut)
    partial = st.dictionaries(st.sampled_from(["payment_id", "amount", "currency", "ts"]), json_values)
    return st.one_of(
        payment.map(orjson.dumps),
        payment.map(orjson.dumps),
        st.none(),
        st.binary(max_size=64),
        st.builds(lambda p, extra: orjson.dumps({**p, **extra}), payment, partial),
        json_values.map(orjson.dumps),
    )


def _records(fmt: str) -> st.SearchStrategy[list[tuple[str, bytes | None, bytes | None, Any]]]:
    return st.lists(st.tuples(st.sampled_from(TOPICS), keys, _values(fmt), headers), min_size=1, max_size=25)


def _check(fmt: str, records: list[tuple[str, bytes | None, bytes | None, Any]]) -> None:
    with TopologyTestDriver(SPECS[fmt], schemas=SCHEMAS, start_ms=T0) as d:
        for customer in ("C-1", "C-2"):
            d.pipe("profiles", {"customer_id": customer, "tier": "gold", "home_country": "DE",
                                "email": "x@example.com", "name": "X"})  # fmt: skip
        for topic, key, value, hdrs in records:
            d.pipe(topic, value, key=key, headers=hdrs)
        d.advance(60)  # past every tier (1 s + 10 s) and any due time a tier may wait for
        assert d.pending_retries() == []
        outputs = sum(len(d.records(t)) for t in OUTPUTS)
        dead = d.dead_letters()
        assert all(r.reason for r in dead), [r.headers for r in dead if not r.reason]
        dropped = sum(d.stats("check")["dropped"].values())
        assert outputs + len(dead) + dropped == len(records)


FUZZ = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.mark.parametrize("fmt", ["json", "avro"])
def test_every_record_is_processed_dead_lettered_or_dropped(fmt: str) -> None:
    FUZZ(given(_records(fmt))(lambda records: _check(fmt, records)))()
