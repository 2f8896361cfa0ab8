"""enrich (rule d): copy the customer's profile; a missing profile is retried as unknown_customer."""

from __future__ import annotations

from step_harness import FakeContext, MemoryTable, build, run_step, txn

PROFILE = {
    "customer_id": "C-000123",
    "name": "Jane Roe",
    "email": "jane@example.com",
    "home_country": "DE",
    "risk_tier": "high",
    "avg_amount": 80.0,
}
FRAUD_ENRICH = {
    "step": "enrich",
    "table": "customer_profiles",
    "key": "customer_id",
    "fields": ["name", "email", "home_country", "risk_tier", "avg_amount"],
    "on_missing": "retry",
    "missing_reason": "unknown_customer",
}


def ctx_with_profiles(*profiles):
    table = MemoryTable("customer_profiles", global_=True)
    for p in profiles:
        table.set(p["customer_id"], p, 0)
    return FakeContext({"customer_profiles": table})


async def test_copies_the_listed_fields():
    out, _ = await run_step(build(FRAUD_ENRICH), [txn()], ctx_with_profiles(PROFILE), partition=4)
    assert out[0]["home_country"] == "DE" and out[0]["risk_tier"] == "high" and out[0]["name"] == "Jane Roe"
    assert out[0]["txn_id"] == "t-1"


async def test_missing_profile_is_retried_with_the_reason():
    out, ctx = await run_step(
        build(FRAUD_ENRICH), [txn(customer_id="C-000999"), txn()], ctx_with_profiles(PROFILE)
    )
    assert len(out) == 1
    assert ctx.retry_reasons == ["unknown_customer"]
    spec = dict(FRAUD_ENRICH)
    del spec["missing_reason"]
    _, ctx = await run_step(build(spec), [txn(customer_id="C-000999")], ctx_with_profiles())
    assert ctx.retry_reasons == ["unknown_customer"]  # derived from the key name


async def test_drop_default_prefix_and_all_fields():
    drop = dict(FRAUD_ENRICH, on_missing="drop")
    out, ctx = await run_step(build(drop), [txn(customer_id="C-000999")], ctx_with_profiles())
    assert out == [] and ctx.drop_reasons == ["missing_row"]

    default = {
        "step": "enrich",
        "table": "customer_profiles",
        "key": "customer_id",
        "fields": ["risk_tier", "home_country"],
        "on_missing": "default",
        "defaults": {"risk_tier": "medium", "home_country": "??"},
        "prefix": "c_",
    }
    out, _ = await run_step(build(default), [txn(customer_id="C-000999")], ctx_with_profiles())
    assert out[0]["c_risk_tier"] == "medium" and out[0]["c_home_country"] == "??"

    everything = {"step": "enrich", "table": "customer_profiles", "key": "customer_id", "prefix": "p_"}
    out, _ = await run_step(build(everything), [txn()], ctx_with_profiles(PROFILE))
    assert {k for k in out[0] if k.startswith("p_")} == {f"p_{k}" for k in PROFILE}


async def test_missing_key_is_rejected():
    out, ctx = await run_step(build(FRAUD_ENRICH), [txn(customer_id=...)], ctx_with_profiles(PROFILE))
    assert out == [] and ctx.reject_reasons == [
        "missing_field: customer_id is required to look up customer_profiles"
    ]
