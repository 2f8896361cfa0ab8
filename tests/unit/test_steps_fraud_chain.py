"""The steps of topologies/fraud_detection.yaml (score_transactions) chained, without a broker."""

from __future__ import annotations

from step_harness import REPO, SCHEMAS, FakeContext, MemoryTable

from stream_orch.steps.base import Event
from stream_orch.steps.mask import hmac_sha256
from stream_orch.steps.registry import build_steps
from stream_orch.topology.loader import load_topology

T = 1_700_000_000_000


def chain():
    spec = load_topology(
        REPO / "topologies" / "fraud_detection.yaml", env={"STREAM_ORCH_MASK_KEY": "k3y"}
    ).spec
    return build_steps(spec, "score_transactions", SCHEMAS)


def context():
    profiles = MemoryTable("customer_profiles", global_=True)
    profiles.set(
        "C-000123",
        {
            "customer_id": "C-000123",
            "name": "Jane",
            "email": "jane@example.com",
            "home_country": "DE",
            "risk_tier": "high",
            "avg_amount": 100.0,
        },
        0,
    )
    return FakeContext({"customer_profiles": profiles})


async def run_chain(steps, ctx, records):
    events = [Event(value=r, partition=0, offset=i) for i, r in enumerate(records)]
    for step in steps:
        events = await step.run(events, ctx)
    return [e.value for e in events]


def raw(**fields):
    record = {
        "txn_id": "t1",
        "account_id": "A-1",
        "customer_id": "C123",
        "amount": "600",
        "currency": "usd",
        "merchant_id": "M-1",
        "channel": "online",
        "country": "fr",
        "ts": "2023-11-14T22:13:20Z",
    }
    record.update(fields)
    return record


async def test_reference_chain_harmonises_enriches_scores_and_masks():
    steps, ctx = chain(), context()
    out = await run_chain(
        steps,
        ctx,
        [
            raw(),
            raw(txn_id="t1", ts=T + 1000),  # duplicate (rule c)
            raw(txn_id="t2", customer_id=999),  # no profile yet (rule d)
            raw(txn_id="t3", amount="-1"),  # invalid (rule b)
        ],
    )
    assert len(out) == 1
    record = out[0]
    assert record["customer_id"] == "C-000123" and record["currency"] == "USD" and record["country"] == "FR"
    assert record["ts"] == T and record["amount_eur"] == 552.0 and record["velocity_60s"] == 1
    # 552 > 5 x 100 (0.4) + FR != DE (0.2) + high risk (0.2) = 0.8
    assert record["score"] == 0.8
    assert record["reasons"] == ["amount_over_5x_average", "foreign_country", "high_risk_customer"]
    assert record["email"] == hmac_sha256("k3y", "jane@example.com") and "name" not in record
    assert SCHEMAS.validator("transaction_enriched")(record) is None
    assert ctx.drop_reasons == ["duplicate"]
    assert ctx.retry_reasons == ["unknown_customer"]
    assert ctx.reject_reasons == ["invalid_field: amount must be > 0 (got -1.0)"]
