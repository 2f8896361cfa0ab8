"""score (rule g): weighted rules, capped at 1, rounded to 2 decimals, reasons in rule order."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from step_harness import build, run_step, topology, txn

from stream_orch.expressions import compile_expression

FRAUD_SCORE = {
    "step": "score",
    "as": "score",
    "reasons": "reasons",
    "cap": 1.0,
    "round": 2,
    "rules": [
        {"name": "amount_over_5x_average", "when": "amount_eur > 5 * avg_amount", "weight": 0.4},
        {"name": "velocity_over_5_per_minute", "when": "velocity_60s > 5", "weight": 0.3},
        {"name": "foreign_country", "when": "country != home_country", "weight": 0.2},
        {"name": "high_risk_customer", "when": "risk_tier == 'high'", "weight": 0.2},
        {"name": "medium_risk_customer", "when": "risk_tier == 'medium'", "weight": 0.1},
        {"name": "large_online_amount", "when": "channel == 'online' and amount_eur > 1000", "weight": 0.1},
    ],
}


def scored(**fields):
    record = txn(
        amount_eur=100.0,
        avg_amount=100.0,
        velocity_60s=1,
        country="DE",
        home_country="DE",
        risk_tier="low",
        channel="card_present",
    )
    record.update(fields)
    return record


@pytest.mark.parametrize(
    ("fields", "score", "reasons"),
    [
        ({}, 0.0, []),
        ({"amount_eur": 501.0}, 0.4, ["amount_over_5x_average"]),
        ({"amount_eur": 500.0}, 0.0, []),  # not strictly more than 5x
        ({"velocity_60s": 6}, 0.3, ["velocity_over_5_per_minute"]),
        ({"velocity_60s": 5}, 0.0, []),
        ({"country": "FR"}, 0.2, ["foreign_country"]),
        ({"risk_tier": "high"}, 0.2, ["high_risk_customer"]),
        ({"risk_tier": "medium"}, 0.1, ["medium_risk_customer"]),
        ({"channel": "online", "amount_eur": 1000.01, "avg_amount": 1000.0}, 0.1, ["large_online_amount"]),
        ({"channel": "online", "amount_eur": 1000.0, "avg_amount": 1000.0}, 0.0, []),
        ({"channel": "atm", "amount_eur": 5000.0, "avg_amount": 1000.0}, 0.0, []),
        # sums are rounded: 0.4 + 0.3 + 0.2 is 0.9000000000000001 in floats
        (
            {"amount_eur": 600.0, "velocity_60s": 9, "country": "FR"},
            0.9,
            ["amount_over_5x_average", "velocity_over_5_per_minute", "foreign_country"],
        ),
        (
            {"velocity_60s": 9, "country": "FR", "risk_tier": "medium"},
            0.6,
            ["velocity_over_5_per_minute", "foreign_country", "medium_risk_customer"],
        ),
        # capped at 1: 0.4 + 0.3 + 0.2 + 0.2 + 0.1 = 1.2
        (
            {
                "amount_eur": 6000.0,
                "velocity_60s": 9,
                "country": "FR",
                "risk_tier": "high",
                "channel": "online",
            },
            1.0,
            [
                "amount_over_5x_average",
                "velocity_over_5_per_minute",
                "foreign_country",
                "high_risk_customer",
                "large_online_amount",
            ],
        ),
    ],
)
async def test_each_rule_cap_rounding_and_reasons(fields, score, reasons):
    out, ctx = await run_step(build(FRAUD_SCORE), [scored(**fields)])
    assert ctx.rejected == []
    assert out[0]["score"] == score
    assert out[0]["reasons"] == reasons


async def test_rule_that_cannot_be_evaluated_rejects_the_record():
    out, ctx = await run_step(build(FRAUD_SCORE), [scored(avg_amount=None), scored()])
    assert len(out) == 1
    assert ctx.reject_reasons[0].startswith("expression_error: rule amount_over_5x_average: ")


async def test_logistic_term_no_cap_and_custom_fields():
    spec = {
        "step": "score",
        "as": "p",
        "reasons": "why",
        "cap": None,
        "round": 3,
        "rules": [{"name": "big", "when": "amount > 100", "weight": 1.0}],
        "logistic": {"intercept": -1.0, "coefficients": {"amount": 0.01}},
    }
    out, ctx = await run_step(build(spec), [txn(amount=200.0), txn(amount="x")])
    assert out[0]["p"] == round(1.0 + 1 / (1 + math.exp(-(-1.0 + 2.0))), 3)
    assert out[0]["why"] == ["big"]
    assert ctx.reject_reasons[0].startswith("expression_error: rule big") or ctx.reject_reasons[0].startswith(
        "invalid_field: amount must be a number for the logistic term"
    )


async def test_a_score_that_is_not_a_finite_number_rejects_the_record():
    """Two logistic terms overflowing with opposite signs make the score nan (issue 19, item 4)."""
    spec = {
        "step": "score",
        "cap": None,
        "round": None,
        "rules": [{"name": "big", "when": "amount > 100", "weight": 1.0}],
        "logistic": {"intercept": 0.0, "coefficients": {"amount": 10.0, "fee": -10.0}},
    }
    out, ctx = await run_step(build(spec), [txn(amount=1e308, fee=1e308), txn(amount=200.0, fee=1.0)])
    assert len(out) == 1
    assert ctx.reject_reasons == ["expression_error: score: the score is not a finite number (nan)"]


_VALUES = st.one_of(
    st.none(),
    st.integers(-10, 10**6),
    st.floats(allow_nan=True),
    st.sampled_from(["DE", "FR", "high", "online", ""]),
)
_FIELDS = ["amount_eur", "avg_amount", "velocity_60s", "country", "home_country", "risk_tier", "channel"]
_RULES = [
    *FRAUD_SCORE["rules"],  # type: ignore[misc]
    {
        "name": "constants_and_functions",
        "when": "round(amount_eur * rates[country], 2) > limit",
        "weight": 0.3,
    },
    {"name": "membership", "when": "country in ['DE', 'FR'] and max(velocity_60s, 1) >= 3", "weight": 0.05},
]


@settings(max_examples=300, deadline=None)
@given(records=st.lists(st.fixed_dictionaries({f: _VALUES for f in _FIELDS}), min_size=1, max_size=6))
async def test_the_rules_in_one_function_score_as_each_rule_alone(records):
    """The step runs its rules as one generated function; the reference here evaluates each
    rule's compiled expression alone, as the step did before: same score and reasons for every
    record, or the same rejection naming the same rule (any order of failures and successes)."""
    spec = {**FRAUD_SCORE, "cap": None, "round": None, "rules": _RULES}
    constants = {"rates": {"DE": 1.0, "FR": 2.5}, "limit": 1000}
    step = build(spec, topology(constants=constants))
    out, ctx = await run_step(step, [dict(r) for r in records])
    expected_out, expected_reasons = [], []
    for record in records:
        total, fired = 0.0, []
        try:
            for rule in _RULES:
                if compile_expression(rule["when"], constants)(record):
                    total += rule["weight"]
                    fired.append(rule["name"])
        except Exception as exc:
            expected_reasons.append(f"expression_error: rule {rule['name']}: {exc}")
            continue
        if total - total:
            expected_reasons.append(f"expression_error: score: the score is not a finite number ({total})")
            continue
        expected_out.append({**record, "score": total, "reasons": fired})
    assert ctx.reject_reasons == expected_reasons
    assert out == expected_out


@pytest.mark.parametrize(("seed", "cap", "digits"), [(1, 1.0, 2), (2, None, 0), (3, 0.5, None), (4, 2.0, 5)])
async def test_the_finished_scores_kept_by_sum_are_those_computed_each_time(seed, cap, digits):
    """The step keeps the capped and rounded score per sum of weights; 13 rules firing in
    each of their 8,192 combinations, twice, make more sums than it keeps, so some are forgotten
    and computed again: every record's score is the one capping and rounding its sum gives."""
    rng = random.Random(seed)
    weights = [rng.uniform(-2, 2) for _ in range(13)]
    rules = [{"name": f"r{i}", "when": f"f{i}", "weight": w} for i, w in enumerate(weights)]
    step = build({"step": "score", "cap": cap, "round": digits, "rules": rules})
    combos = [{f"f{i}": bool(n >> i & 1) for i in range(13)} for n in range(2**13)]
    records = combos + combos[::-1]
    out, ctx = await run_step(step, [dict(r) for r in records])
    assert ctx.reject_reasons == []
    for record, got in zip(records, out, strict=True):
        total = 0.0
        for i, w in enumerate(weights):
            if record[f"f{i}"]:
                total += w
        if cap is not None and total > cap:
            total = cap
        expected = total if digits is None else round(total, digits)
        assert got["score"] == expected and type(got["score"]) is type(expected)
