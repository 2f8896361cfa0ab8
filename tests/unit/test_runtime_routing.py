"""Routing without a broker: which outputs an event becomes, their bytes, keys, partitions and
lineage headers, and what happens to an event whose output cannot be rendered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import murmur2

from stream_orch.codecs import SchemaRegistry
from stream_orch.reliability import headers as H
from stream_orch.runtime.batch import BatchStats, NodeContext
from stream_orch.runtime.output import Outbox, PartitionMap
from stream_orch.runtime.routing import Router
from stream_orch.steps.base import Event
from stream_orch.topology.loader import load_topology
from stream_orch.transport.records import decode_headers

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = SchemaRegistry(REPO / "schemas")
SPEC = load_topology(REPO / "topologies" / "fraud_detection.yaml").spec
NODE = "score_transactions"
NOW = 1_700_000_123_456


def scored(score: float, **extra: Any) -> dict[str, Any]:
    """A record as the fraud node's steps leave it (name dropped, email hashed)."""
    return {
        "txn_id": "T-1",
        "account_id": "A-0000042",
        "customer_id": "C-000042",
        "amount": 120.5,
        "currency": "USD",
        "merchant_id": "M-0000001",
        "channel": "online",
        "country": "DE",
        "ts": 1_700_000_000_000,
        "bench_sent_ns": 5,  # not in any output schema: projected away
        "home_country": "DE",
        "risk_tier": "low",
        "avg_amount": 80.0,
        "email": "ab" * 32,
        "amount_eur": 110.86,
        "velocity_60s": 1,
        "fraud_probability": 0.01,
        "score": score,
        "reasons": ["foreign_country"] if score else [],
        **extra,
    }


def event(value: dict[str, Any], *, partition: int = 3, offset: int = 77, headers: Any = None) -> Event:
    return Event(
        value, b"A-0000042", b"raw", headers or [], "transactions", partition, offset, 1_699_999_999_000,
        0, "transactions", partition, offset,
    )  # fmt: skip


def fields(schema: str) -> list[str]:
    return [f["name"] for f in SCHEMAS.fields(schema)]


def route(*events: Event) -> tuple[dict[int, Any], NodeContext, BatchStats, PartitionMap]:
    partitions = PartitionMap({t: 6 for t in SPEC.topics})
    outbox = Outbox(partitions)
    ctx = NodeContext(SPEC.topology, NODE, {}, {})
    stats = BatchStats()
    Router(SPEC, NODE, SCHEMAS).route(list(events), outbox, ctx, stats, NOW)
    return outbox.take(), ctx, stats, partitions


def lineage(partition: int = 3, offset: int = 77, topic: str = "transactions") -> list[tuple[str, bytes]]:
    return [
        (H.TOPOLOGY, b"fraud_detection"),
        (H.VERSION, b"1.0.0"),
        (H.NODE, NODE.encode()),
        (H.SRC_TOPIC, topic.encode()),
        (H.SRC_PARTITION, str(partition).encode()),
        (H.SRC_OFFSET, str(offset).encode()),
        (H.PROCESSED_AT, str(NOW).encode()),
    ]


def outputs(by_task: dict[int, Any]) -> dict[str, list[tuple[int, int, bytes | None, bytes, Any, Any]]]:
    """topic -> [(task, partition, key, value, timestamp, headers)]."""
    out: dict[str, list[Any]] = {}
    for task, pending in by_task.items():
        for (topic, partition), records in pending.items():
            for key, value, ts, headers in records:
                # lineage headers alone come encoded, as a record batch carries them
                listed = decode_headers(headers) if isinstance(headers, bytes) else list(headers)
                out.setdefault(topic, []).append((task, partition, key, value, ts, listed))
    return out


def test_an_approved_event_goes_to_enriched_and_approved_with_the_same_bytes_and_lineage() -> None:
    value = scored(0.2)
    by_task, ctx, stats, partitions = route(event(value))
    got = outputs(by_task)
    assert sorted(got) == ["transactions.approved", "transactions.enriched"]
    expected_value = orjson.dumps({k: value[k] for k in fields("transaction_enriched")})
    partition = (murmur2(b"A-0000042") & 0x7FFFFFFF) % 6
    for topic in got:
        assert got[topic] == [(3, partition, b"A-0000042", expected_value, 1_699_999_999_000, lineage())]
    assert partitions.of("transactions.enriched", b"A-0000042") == partition
    assert not ctx.failures
    assert stats.outputs == {
        ("1:always", "transactions.enriched"): 1,
        ("4:otherwise", "transactions.approved"): 1,
    }


def test_an_alert_sets_its_fields_and_the_first_matching_route_wins() -> None:
    value = scored(0.97)
    got = outputs(route(event(value))[0])
    assert sorted(got) == ["account.actions", "fraud.alerts", "transactions.enriched"], "not review too"
    alert = orjson.loads(got["fraud.alerts"][0][3])
    assert list(alert) == [f for f in fields("fraud_alert") if f != "severity"] + ["severity"]
    assert alert["severity"] == "critical" and alert["score"] == 0.97
    action = orjson.loads(got["account.actions"][0][3])
    assert action == {**{k: value[k] for k in fields("account_action") if k != "action"}, "action": "freeze"}
    assert got["account.actions"][0][2] == b"A-0000042"
    review = outputs(route(event(scored(0.6)))[0])
    assert sorted(review) == ["fraud.review", "transactions.enriched"]


def test_user_headers_follow_the_lineage_and_engine_headers_are_not_carried_over() -> None:
    headers = [("trace", b"t-1"), (H.SRC_OFFSET, b"999"), ("so.error.reason", b"x"), ("b", b"")]
    got = outputs(route(event(scored(0.1), headers=headers))[0])
    assert got["transactions.enriched"][0][5] == [*lineage(), ("trace", b"t-1"), ("b", b"")]


def test_a_retried_event_reports_where_it_first_came_from() -> None:
    ev = event(scored(0.1), partition=2, offset=5)
    ev.topic, ev.attempt, ev.source_partition, ev.source_offset = "transactions.retry.1", 1, 4, 1234
    got = outputs(route(ev)[0])
    task, _, _, _, _, headers = got["transactions.enriched"][0]
    assert task == 2, "outputs belong to the partition the event was read from"
    assert headers == lineage(partition=4, offset=1234)


def test_events_of_one_batch_keep_their_order_and_their_own_offsets() -> None:
    events = [event(scored(0.1), offset=n) for n in range(5)]
    got = outputs(route(*events)[0])
    offsets = [dict(h)[H.SRC_OFFSET] for *_, h in got["transactions.enriched"]]
    assert offsets == [b"0", b"1", b"2", b"3", b"4"]


def test_an_output_that_cannot_be_rendered_sends_the_event_to_the_dlq_and_not_elsewhere() -> None:
    broken = scored(0.85, amount_eur="lots")  # a double in every output schema of the route
    good = scored(0.1)
    by_task, ctx, stats, _ = route(event(broken, offset=1), event(good, offset=2))
    got = outputs(by_task)
    assert [dict(h)[H.SRC_OFFSET] for *_, h in got["transactions.enriched"]] == [b"2"]
    assert [f.reason for f in ctx.failures] == [
        "output_schema_violation: transactions.enriched.amount_eur: expected double, got str 'lots'"
    ]
    assert ctx.failures[0].event.offset == 1
    assert stats.outputs[("1:always", "transactions.enriched")] == 1


def test_an_output_larger_than_a_broker_accepts_is_rejected_as_too_large() -> None:
    huge = scored(0.1, txn_id="T" * (H.MAX_RECORD_BYTES + 10))
    by_task, ctx, _, _ = route(event(huge))
    assert outputs(by_task) == {}
    assert ctx.failures[0].reason.startswith("output_too_large:")


@pytest.mark.parametrize("missing", ["email", "reasons"])
def test_a_field_absent_from_the_record_stays_absent_from_the_output(missing: str) -> None:
    value = scored(0.1)
    del value[missing]
    got = outputs(route(event(value))[0])
    assert missing not in orjson.loads(got["transactions.enriched"][0][3])


def test_outputs_of_two_routes_to_one_topic_keep_the_order_of_the_events() -> None:
    from stream_orch.topology.loader import parse_topology

    spec = parse_topology(
        """
topology: twice
version: "1"
topics:
  in: {partitions: 1}
  out: {partitions: 4, key: k}
nodes:
  n:
    input: in
    steps: []
    routes:
      - to: out
      - to:
          - topic: out
            set: {copy: "True"}
""",
        "twice.yaml",
    ).spec
    outbox = Outbox(PartitionMap({"in": 1, "out": 4}))
    events = [event({"k": "same", "n": n}, offset=n) for n in range(3)]
    Router(spec, "n", SCHEMAS).route(events, outbox, NodeContext("twice", "n", {}, {}), BatchStats(), NOW)
    (records,) = outbox.take()[3].values()
    assert [orjson.loads(v) for _, v, _, _ in records] == [
        {"k": "same", "n": 0},
        {"k": "same", "n": 0, "copy": True},
        {"k": "same", "n": 1},
        {"k": "same", "n": 1, "copy": True},
        {"k": "same", "n": 2},
        {"k": "same", "n": 2, "copy": True},
    ]
    assert {k for k, _, _, _ in records} == {b"same"}


def test_a_condition_that_cannot_be_evaluated_sends_the_event_to_the_dlq() -> None:
    unscored = scored(0.1)
    unscored["score"] = "high"  # `score >= 0.8` compares text with a number
    by_task, ctx, _, _ = route(event(unscored, offset=1), event(scored(0.1), offset=2))
    assert [dict(h)[H.SRC_OFFSET] for *_, h in outputs(by_task)["transactions.enriched"]] == [b"2"]
    assert [f.reason.split(":")[0] for f in ctx.failures] == ["routing_error"]


@pytest.mark.parametrize("score", [0.0, 0.5, 0.79, 0.8, 0.95, 1, True, None, "high", float("nan"), [1], ...])
def test_the_conditions_in_one_function_choose_as_the_conditions_one_by_one(score: Any) -> None:
    """The routes' conditions run as one generated function; a record it raises on is chosen
    for again condition by condition, which fails with the compiled expression's explanation."""
    router = Router(SPEC, NODE, SCHEMAS)
    value = scored(0.1)
    if score is ...:
        del value["score"]
    else:
        value["score"] = score
    try:
        expected: Any = router._choose_one_by_one(value)
    except Exception as exc:
        expected = f"{type(exc).__name__}: {exc}"
        with pytest.raises(Exception):  # noqa: B017 (whatever the condition raises)
            router._choose(value)
    else:
        assert router._choose(value) is expected
        return
    _, ctx, _, _ = route(event(value))
    assert [(f.reason, f"{type(f.error).__name__}: {f.error}") for f in ctx.failures] == [
        (f"routing_error: {expected.split(': ', 1)[1]}", expected)
    ]


def test_json_outputs_encoded_inline_are_the_codecs_bytes_and_a_failure_is_the_codecs(monkeypatch) -> None:
    """The router encodes a JSON output with a schema itself (JsonCodec.encode_conformed inline):
    the codec's bytes; when orjson fails there the codec encodes it (and raises its own error)."""
    from stream_orch.codecs import JsonCodec

    inline, _, _, _ = route(event(scored(0.9)))
    codec = JsonCodec()
    for topic, records in outputs(inline).items():
        values = [value for _, _, _, value, _, _ in records]
        assert values == [codec.encode_conformed(orjson.loads(v)) for v in values], topic

    def failing(value, *args):
        raise orjson.JSONEncodeError("no")

    monkeypatch.setattr(orjson, "dumps", failing)  # the router's; the codec holds its own
    again, ctx, _, _ = route(event(scored(0.9)))
    assert outputs(again) == outputs(inline) and not ctx.failures
