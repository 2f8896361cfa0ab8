"""The console's DLQ page without a broker: which topics it serves, its bad-argument and
broker-down pages, and how it shows untrusted dead letters (garbage bytes and headers, PII).

The records are real ``ConsumerRecord`` objects made into ``record_json`` as ``dlq inspect``
makes them; the console is a real aiohttp server on loopback (as in test_console_pages.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import ConsumerRecord

from stream_orch.console.app import make_console_app
from stream_orch.console.dlq_page import record_html
from stream_orch.console.live import Live, Topo
from stream_orch.reliability import headers as H
from stream_orch.reliability.dlq import record_json
from stream_orch.runtime.inspect import MASKED, PiiMask
from stream_orch.settings import Settings
from stream_orch.topology.loader import load_topology

FRAUD = Path(__file__).resolve().parents[2] / "topologies" / "fraud_detection.yaml"


def _record(value: bytes | None, headers: list[tuple[str, bytes | None]], key: bytes | None = b"k"):  # type: ignore[no-untyped-def]
    return ConsumerRecord(
        topic="transactions.dlq", partition=0, offset=7, timestamp=1_767_225_600_000, timestamp_type=0,
        key=key, value=value, checksum=None, serialized_key_size=1,
        serialized_value_size=len(value or b""), headers=headers,
    )  # fmt: skip


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    spec = load_topology(FRAUD).spec
    # nothing listens on port 1: the broker is down
    live = Live(
        {spec.topology: Topo(spec)}, Settings(bootstrap_servers="127.0.0.1:1", request_timeout_s=1.0), []
    )
    c = TestClient(TestServer(make_console_app(live, poll=False)))
    await c.start_server()
    yield c
    await c.close()


async def test_only_the_topologys_dlq_topics_have_a_page(client: TestClient) -> None:
    resp = await client.get("/console/fraud_detection/dlq/customers")
    text = await resp.text()
    assert resp.status == 404
    assert "is not a dead-letter topic of fraud_detection" in text and "transactions.dlq" in text


async def test_a_bad_records_argument_is_a_400_saying_what_is_allowed(client: TestClient) -> None:
    for bad in ("-1", "x", "21", "1e9"):
        resp = await client.get("/console/fraud_detection/dlq/transactions.dlq", params={"records": bad})
        assert resp.status == 400, bad
        assert "records: a whole number from 0 to 20" in await resp.text()


async def test_a_bad_before_argument_is_a_400_saying_what_is_allowed(client: TestClient) -> None:
    for bad in ("0", "0:x", "-1:5", "0:5,1"):
        resp = await client.get("/console/fraud_detection/dlq/transactions.dlq", params={"before": bad})
        assert resp.status == 400, bad
        assert "before: partition:offset pairs, comma-separated" in await resp.text()


async def test_a_broker_down_is_a_banner_on_the_dlq_page(client: TestClient) -> None:
    resp = await client.get("/console/fraud_detection/dlq/transactions.dlq", params={"dry_run": "1"})
    text = await resp.text()
    assert resp.status == 200
    assert 'role="alert"' in text and "127.0.0.1:1" in text
    assert "Traceback" not in text


async def test_the_topology_page_links_each_dlq_from_its_row_and_its_graph_vertex(client: TestClient) -> None:
    text = await (await client.get("/console/fraud_detection")).text()
    href = 'href="/console/fraud_detection/dlq/transactions.dlq"'
    assert text.count(href) == 2  # the node's row and the graph's DLQ vertex (a focusable link)
    assert 'aria-label="dead letters of transactions.dlq"' in text
    node = await (await client.get("/console/fraud_detection/node/score_transactions")).text()
    assert "/console/fraud_detection/dlq/transactions.dlq" in node


def test_pii_fields_are_masked_at_any_depth_and_reason_headers_show_their_code_only() -> None:
    mask = PiiMask(frozenset({"email", "name"}))
    value = b'{"email": "ann@example.com", "amount": 12, "customer": {"name": "Ann Smith", "tier": "gold"}}'
    headers = [
        (H.ERROR_REASON, b"invalid_field: email ann@example.com is not allowed"),
        (H.ERROR_MESSAGE, b"invalid_field: email ann@example.com is not allowed"),
        (H.ERROR_NODE, b"score_transactions"),
    ]
    html = record_html(record_json(_record(value, headers)), mask)
    assert "ann@example.com" not in html and "Ann Smith" not in html
    assert html.count(MASKED.replace("<", "&lt;").replace(">", "&gt;")) == 2
    assert "gold" in html and "12" in html and "score_transactions" in html
    assert "invalid_field (details: stream-orch dlq inspect --records)" in html


def test_garbage_bytes_and_headers_show_as_such_escaped() -> None:
    headers = [
        (H.ERROR_NODE, b"\xff\xfe<script>alert(1)</script>\x1b[31m"),
        ("<b>bad\nname", b"x"),
        ("empty", None),
    ]
    record = record_json(_record(b"\xff\xfe\x00garbage", headers, key=b"\xff<k>"))
    # without PII fields the bytes are shown as dlq inspect shows them (base64), marked as such
    plain = record_html(record, PiiMask(frozenset()))
    assert "(not JSON, base64)" in plain and record["value"] in plain
    for html in (plain, record_html(record, PiiMask(frozenset({"email"})))):
        assert "<script>" not in html and "<b>" not in html and "\x1b" not in html
        assert "&lt;script&gt;" in html and "(no value)" in html
    masked = record_html(record, PiiMask(frozenset({"email"})))
    assert "not shown: its PII fields cannot be masked" in masked and record["value"] not in masked
    none = record_html(record_json(_record(None, [])), PiiMask(frozenset()))
    assert "(no value)" in none
