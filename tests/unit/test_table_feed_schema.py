"""Records of a topic that feeds a table are checked against the topic's schema (issue 12, item 5):
a row that does not match is skipped (the key keeps its row), counted and logged."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest

from stream_orch.codecs import SchemaRegistry
from stream_orch.state.global_table import GlobalTable
from stream_orch.state.topic_rows import InvalidRow, table_row_decoder
from stream_orch.topology.models import TopicSpec

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = SchemaRegistry(REPO / "schemas")
PROFILE = {"customer_id": "C-000001", "home_country": "DE", "risk_tier": "low", "avg_amount": 80.0}


def record(offset: int, key: bytes | None, value: object) -> SimpleNamespace:
    raw = value if value is None or isinstance(value, bytes) else orjson.dumps(value)
    return SimpleNamespace(topic="customers.clean", partition=0, offset=offset, key=key, value=raw)


def table() -> GlobalTable:
    topic = TopicSpec(schema="customer", key="customer_id")
    return GlobalTable("profiles", "customers.clean", 1, {}, table_row_decoder(topic, SCHEMAS))


def test_a_row_that_does_not_match_the_schema_is_skipped_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    t = table()
    t._apply(record(0, b"C-000001", PROFILE))
    with caplog.at_level(logging.DEBUG, "stream_orch.state.global_table"):
        t._apply(record(1, b"C-000001", {**PROFILE, "avg_amount": "lots"}))  # keeps the row it had
        t._apply(record(2, b"C-000002", {"customer_id": "C-000002"}))  # required fields missing
        t._apply(record(3, b"C-000003", b"{not json"))
    assert t.get("C-000001", 0) == PROFILE
    assert t.get("C-000002", 0) is None and t.get("C-000003", 0) is None
    assert (t.invalid_rows, t.decode_errors) == (2, 1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings[0] == (
        "table profiles: skipped the row at customers.clean:1 (1 so far): "
        "it does not match the topic's schema"
    )
    assert warnings[2] == (
        "table profiles: skipped the row at customers.clean:3 (3 so far): it cannot be decoded"
    )
    assert not [w for w in warnings if "C-0000" in w or "lots" in w]  # record data: debug only
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert debug[0] == (
        "table profiles: skipped the row of key 'C-000001' at customers.clean:1: "
        "field 'avg_amount': expected double, got str 'lots'"
    )
    assert "field 'home_country': missing" in debug[1]
    assert "malformed_json" in debug[2]
    assert t._positions == {0: 4}  # a bad row never stops the table


def test_the_log_stays_short_when_a_topic_is_full_of_bad_rows(caplog: pytest.LogCaptureFixture) -> None:
    t = table()
    with caplog.at_level(logging.WARNING, "stream_orch.state.global_table"):
        for i in range(2500):
            t._apply(record(i, b"k", {"customer_id": 1}))
    assert t.invalid_rows == 2500
    assert len(caplog.records) == 5 + 2  # the first five, then the 1000th and the 2000th


def test_topics_without_a_schema_or_in_avro_are_decoded_only() -> None:
    plain = table_row_decoder(TopicSpec(), SCHEMAS)
    assert plain(b'{"anything": 1}') == {"anything": 1}
    checked = table_row_decoder(TopicSpec(schema="customer"), SCHEMAS)
    with pytest.raises(InvalidRow, match="field 'customer_id': expected string, got int 1"):
        checked(orjson.dumps({**PROFILE, "customer_id": 1}))
