"""An output topic the worker's user may not write (found at start): an event routed there is
rejected whole, with reason not_authorized, and nothing of it is written anywhere; an event not
routed there is untouched."""

from __future__ import annotations

from pathlib import Path

from stream_orch.codecs import SchemaRegistry
from stream_orch.runtime.batch import BatchStats, NodeContext
from stream_orch.runtime.output import Outbox, PartitionMap
from stream_orch.runtime.routing import Router
from stream_orch.steps.base import Event
from stream_orch.topology.loader import load_topology

REPO = Path(__file__).resolve().parents[2]
SPEC = load_topology(REPO / "topologies" / "fraud_detection.yaml").spec
NODE = "score_transactions"


def _event(score: float, offset: int) -> Event:
    value = {
        **{"txn_id": f"T-{offset}", "account_id": "A-1", "customer_id": "C-000001", "amount": 10.0},
        **{"currency": "EUR", "merchant_id": "M-1", "channel": "online", "country": "FR", "ts": 1},
        **{"home_country": "FR", "risk_tier": "low", "avg_amount": 10.0, "email": "e", "amount_eur": 10.0},
        **{"velocity_60s": 1, "fraud_probability": 0.1, "score": score, "reasons": []},
    }
    return Event(
        value, b"A-1", b"raw", [], "transactions", 0, offset, 1, 0, "transactions", 0, offset,
    )  # fmt: skip


def test_an_event_routed_to_a_denied_topic_is_rejected_whole() -> None:
    outbox = Outbox(PartitionMap({t: 6 for t in SPEC.topics}))
    ctx = NodeContext(SPEC.topology, NODE, {}, {})
    router = Router(SPEC, NODE, SchemaRegistry(REPO / "schemas"), denied=frozenset({"fraud.review"}))
    router.route([_event(0.6, 1), _event(0.1, 2)], outbox, ctx, BatchStats(), 0)
    written = {topic for pending in outbox.take().values() for (topic, _p) in pending}
    assert written == {"transactions.enriched", "transactions.approved"}  # the second event only
    assert [(f.event.offset, f.reason) for f in ctx.failures] == [
        (1, "not_authorized: WRITE on topic fraud.review")
    ]


def test_a_node_names_what_an_authorization_error_lacks() -> None:
    from aiokafka.errors import (
        GroupAuthorizationFailedError,
        KafkaConnectionError,
        TransactionalIdAuthorizationFailed,
    )

    from stream_orch.runtime.access import denial

    txn = denial(TransactionalIdAuthorizationFailed(), group="t.n", txn_prefix="stream-orch.t.n.")
    assert txn == "not authorized: WRITE on transactional ids stream-orch.t.n.* (exactly_once)"
    assert denial(GroupAuthorizationFailedError(), group="t.n", txn_prefix=None) == (
        "not authorized: READ on group 't.n'"
    )
    assert denial(KafkaConnectionError(), group="t.n", txn_prefix=None) is None  # not ours to name
