"""Dead letters counted per step: the runtime labels each failure with the step (or the decode,
route or deliver stage) that raised it, the metric carries it, and the console's node page shows
it per step. The driver runs the worker's record path in memory; the metrics are served by the
worker's own HTTP server and read by a console over loopback."""

from __future__ import annotations

from pathlib import Path

import orjson
from aiohttp.test_utils import TestClient, TestServer

from stream_orch.console.app import make_console_app
from stream_orch.console.live import Live, Topo
from stream_orch.observability.http import serve
from stream_orch.observability.metrics import Metrics
from stream_orch.settings import Settings
from stream_orch.testing import TopologyTestDriver
from stream_orch.topology.loader import load_topology
from stream_orch.topology.naming import step_labels

REPO = Path(__file__).resolve().parents[2]
FRAUD = REPO / "topologies" / "fraud_detection.yaml"
T0 = 1_767_225_600_000


def _txn(txn_id: str, customer: object = 123, **fields: object) -> bytes:
    value = {
        "txn_id": txn_id, "account_id": "A-1", "customer_id": customer, "amount": 10, "currency": "EUR",
        "merchant_id": "M-1", "channel": "atm", "country": "DE", "ts": T0,
    }  # fmt: skip
    return orjson.dumps({**value, **fields})


def test_step_labels_are_place_and_kind() -> None:
    node = load_topology(FRAUD).spec.nodes["score_transactions"]
    labels = step_labels(node)
    assert labels[:3] == ["1.normalize", "2.validate", "3.enrich"]
    assert len(labels) == len(node.steps) == len(set(labels))


def test_each_dead_letter_is_counted_at_the_step_that_failed_it() -> None:
    with TopologyTestDriver(
        FRAUD, schemas=REPO / "schemas", env={"STREAM_ORCH_MASK_KEY": "s"}, start_ms=T0
    ) as d:
        d.pipe("transactions", b'{"txn_id": ', key="A-2")  # not JSON: decoding fails
        d.pipe("transactions", _txn("neg", amount=-5))  # normalize: amount must be > 0
        d.pipe("transactions", _txn("cur", currency="XXX"))  # normalize: not one of the currencies
        d.pipe("transactions", _txn("late", customer=600))  # enrich: no profile, through the tiers
        d.advance(60)
        stats = d.stats("score_transactions")
    assert stats["dead_lettered_steps"] == {"decode": 1, "1.normalize": 2, "3.enrich": 1}
    assert sum(stats["dead_lettered"].values()) == 4
    assert stats["dead_lettered"]["unknown_customer"] == 1


async def test_the_node_page_shows_dead_letters_per_step_from_the_workers_metrics() -> None:
    spec = load_topology(FRAUD).spec
    metrics = Metrics()
    metrics.dead_letter("score_transactions", "invalid_field", 2, "1.normalize")
    metrics.dead_letter("score_transactions", "unknown_customer", 5, "3.enrich")
    metrics.dead_letter("score_transactions", "malformed_json", 1, "decode")
    metrics.batch_done("score_transactions", "transactions", 8)
    worker = await serve(metrics, None, "127.0.0.1", 0)
    live = Live(
        {spec.topology: Topo(spec)},
        Settings(bootstrap_servers="127.0.0.1:1", request_timeout_s=1.0),
        [worker.url],
    )
    await live.poll()
    client = TestClient(TestServer(make_console_app(live, poll=False)))
    await client.start_server()
    try:
        resp = await client.get("/console/fraud_detection/node/score_transactions")
        html = await resp.text()
    finally:
        await client.close()
        await live.close()
        await worker.stop()
    assert resp.status == 200

    def cell(label: str) -> str:
        row = html.split(f"<tr id='step-{label}'>", 1)[1].split("</tr>", 1)[0]
        return row.split("<td class='rejects'>", 1)[1].split("</td>", 1)[0]

    assert cell("1.normalize") == "invalid_field: 2"
    assert cell("3.enrich") == "unknown_customer: 5"
    assert cell("decode") == "malformed_json: 1"
    assert cell("2.validate") == "0" and cell("route") == "0"
