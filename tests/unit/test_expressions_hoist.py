"""hoist_reads: fields that several compiled bodies read are read once, first; every body then
gives what it gave reading the record itself (or raises the same error)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_orch.expressions import compile_expression
from stream_orch.expressions.hoist import hoist_reads

SOURCES = [
    "amount_eur > 5 * avg_amount",
    "velocity_60s > 5",
    "country != home_country",
    "risk_tier == 'high'",
    "channel == 'online' and amount_eur > 1000",
    "fraud_probability >= 0.99 and velocity_60s <= 5 and amount_eur <= 5 * avg_amount",
    "score >= 0.8",
    "'r.get(\"score\")' == risk_tier",  # the read's text inside a string stays text
    "max(avg_amount, 1.0) + amount_eur",
]
values = st.one_of(st.none(), st.integers(-3, 3), st.floats(-10, 2000), st.sampled_from(["high", "DE", "x"]))
FIELDS = ["amount_eur", "avg_amount", "velocity_60s", "country", "home_country", "risk_tier", "channel"]
records = st.dictionaries(st.sampled_from([*FIELDS, "fraud_probability", "score"]), values)


def _functions(bodies: list[str], reads: list[str], compiled: list) -> list:
    namespace: dict[str, Any] = {}
    for expr in compiled:
        namespace.update(expr.fn.__globals__)
    out = []
    for i, body in enumerate(bodies):
        source = "def f(r):\n" + "".join(f"    {read}\n" for read in reads) + f"    return {body}\n"
        exec(compile(source, f"<test {i}>", "exec"), namespace)
        out.append(namespace["f"])
    return out


def _outcome(fn, record):
    try:
        return ("ok", repr(fn(record)))
    except Exception as exc:
        return ("raised", type(exc).__name__)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(SOURCES), min_size=1, max_size=5), records)
def test_hoisted_bodies_give_what_the_bodies_give(sources: list[str], record: dict) -> None:
    compiled = [compile_expression(s) for s in sources]
    bodies = [e.body for e in compiled]
    reads, hoisted = hoist_reads(bodies)
    assert len(reads) == len({r for r in reads})
    plain, fused = _functions(bodies, [], compiled), _functions(hoisted, reads, compiled)
    for a, b in zip(plain, fused, strict=True):
        assert _outcome(a, record) == _outcome(b, record)


def test_only_fields_read_twice_are_hoisted_and_string_text_is_left_alone() -> None:
    bodies = [compile_expression(s).body for s in ["score >= 0.8", "score >= 0.5", "risk_tier == 'x'"]]
    reads, hoisted = hoist_reads(bodies)
    assert reads == ["_read0 = r.get('score')"]
    assert all("r.get('score')" not in body for body in hoisted) and "r.get('risk_tier')" in hoisted[2]
    text = compile_expression("'r.get(\"score\")' == risk_tier").body
    assert hoist_reads([text, text])[1][0].count('r.get("score")') == 1
