"""derive (rule e: amount_eur from the rates constant) and filter."""

from __future__ import annotations

import pytest
from step_harness import build, run_step, txn

from stream_orch.steps.common import StepConfigError

AMOUNT_EUR = {"step": "derive", "fields": {"amount_eur": "round(amount * rates_to_eur[currency], 2)"}}


@pytest.mark.parametrize(
    ("currency", "amount", "expected"),
    [
        ("EUR", 100.0, 100.0),
        ("USD", 100.0, 92.0),
        ("GBP", 100.0, 117.0),
        ("CHF", 10.0, 10.5),
        ("JPY", 10000.0, 62.0),
        ("USD", 33.33, 30.66),
    ],
)
async def test_amount_eur_from_the_rates_constant(currency, amount, expected):
    out, ctx = await run_step(build(AMOUNT_EUR), [txn(currency=currency, amount=amount)])
    assert ctx.rejected == []
    assert out[0]["amount_eur"] == expected


async def test_derive_fields_in_order_and_errors_per_record():
    step = build({"step": "derive", "fields": {"a": "amount * 2", "b": "a + 1"}})
    out, ctx = await run_step(step, [txn(amount=2.0), txn(amount=...), txn(amount=3.0)])
    assert [(r["a"], r["b"]) for r in out] == [(4.0, 5.0), (6.0, 7.0)]
    assert len(ctx.reject_reasons) == 1
    assert ctx.reject_reasons[0].startswith("expression_error: a: ")
    assert "amount" in ctx.reject_reasons[0]


def test_derive_bad_expression_is_a_config_error():
    with pytest.raises(StepConfigError, match="field x"):
        build({"step": "derive", "fields": {"x": "__import__('os')"}})


async def test_filter_keeps_true_drops_false_rejects_errors():
    step = build({"step": "filter", "when": "amount > 100"})
    out, ctx = await run_step(step, [txn(amount=150.0), txn(amount=50.0), txn(amount="x")])
    assert [r["amount"] for r in out] == [150.0]
    assert ctx.drop_reasons == ["filtered"]
    assert len(ctx.reject_reasons) == 1 and ctx.reject_reasons[0].startswith("expression_error: filter: ")


async def test_derive_rejects_a_result_that_is_not_a_finite_number():
    """amount * rate overflowing to inf went on as a value (and out as null; issue 19, item 4)."""
    step = build({"step": "derive", "fields": {"a": "amount * 1e300", "b": "a - a"}})
    out, ctx = await run_step(step, [txn(amount=1e10), txn(amount=2.0)])
    assert [r["a"] for r in out] == [2e300]
    assert ctx.reject_reasons == [
        "expression_error: a: the result is not a finite number (inf) in `amount * 1e300`"
    ]


@pytest.mark.timeout(60)  # a guard, not a timing goal: before the bounds this took about 10 s
async def test_an_expression_that_would_stall_the_worker_is_an_expression_error_for_the_record():
    step = build({"step": "derive", "fields": {"x": "((amount ** 1000) ** 1000) ** 10", "y": "'a' * n"}})
    out, ctx = await run_step(step, [txn(amount=10, n=1), txn(amount=1, n=10**8), txn(amount=1, n=3)])
    assert [(r["x"], r["y"]) for r in out] == [(1, "aaa")]
    assert [r.split(" (")[0].split(":")[:3] for r in ctx.reject_reasons] == [
        ["expression_error", " x", " the result of ** is too large"],
        ["expression_error", " y", " the result of * is too long"],
    ]
