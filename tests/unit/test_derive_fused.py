"""``derive`` runs its fields as one generated function (bodies inline); a record it fails on is
evaluated again field by field from the failing one. Records, rejections and their reasons are
those of the field-by-field loop."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from stream_orch.expressions import compile_expression
from stream_orch.runtime.batch import NodeContext
from stream_orch.steps.base import Event
from stream_orch.steps.derive import DeriveStepImpl

CONSTANTS = {"rates": {"EUR": 1.0, "USD": 0.9}, "big": 1e308}
FIELDS = {
    "amount": "amount * 2",  # overwrites a field the next ones read
    "eur": "amount * rates[currency]",
    "huge": "amount * big",  # inf for large amounts: not finite
    "label": "'high' if eur > 100 else 'low'",
    "ratio": "eur / amount",  # division by zero for amount 0
}

RECORDS: list[dict[str, Any]] = [
    {"amount": 10, "currency": "EUR"},
    {"amount": 80.5, "currency": "USD"},
    {"amount": 0, "currency": "EUR"},
    {"amount": "x", "currency": "EUR"},
    {"currency": "EUR"},
    {"amount": 10, "currency": "JPY"},
    {"amount": 1e300, "currency": "EUR"},
    {"amount": None, "currency": "USD"},
    {"amount": 3, "currency": "USD", "label": "kept?"},
    {"amount": True, "currency": "EUR"},
]


def run(step: DeriveStepImpl, records: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
    ctx = NodeContext("t", "n", dict(CONSTANTS), {})
    events = [Event(copy.deepcopy(r), offset=i) for i, r in enumerate(records)]
    out = asyncio.run(step.run(events, ctx))
    # every event's record, kept or not (a rejected one keeps the fields set before the failure)
    return [(e.offset, e.value) for e in out], [
        (f.event.offset, f.event.value, f.reason) for f in ctx.failures
    ]


@pytest.mark.parametrize("n_fields", [1, 2, 5])
def test_the_fused_fields_give_what_the_field_by_field_loop_gives(n_fields: int) -> None:
    compiled = {
        field: compile_expression(src, constants=CONSTANTS) for field, src in list(FIELDS.items())[:n_fields]
    }
    fused = DeriveStepImpl(compiled)
    assert fused._fused is not None
    plain = DeriveStepImpl(compiled)
    plain._fused = None
    records = RECORDS * 3
    got, expected = run(fused, records), run(plain, records)
    assert got == expected
    if n_fields == 5:
        reasons = {reason.split(":")[1].strip() for *_, reason in expected[1]}
        assert reasons == {"amount", "eur", "huge", "ratio"}  # failures at several fields


def test_expressions_without_a_body_run_field_by_field() -> None:
    class Plain:
        fn = staticmethod(lambda record: 1)

    step = DeriveStepImpl({"one": Plain()})
    assert step._fused is None
    assert run(step, [{"a": 1}]) == ([(0, {"a": 1, "one": 1})], [])
