"""join (issue 20, part 3): what an emitted record carries of the other side.

Every record a join emits has the other side's declared fields (`fields`, else its topic's
schema): a left record without a match carries them as null instead of omitting them.
"""

from __future__ import annotations

from step_harness import FakeContext, build, topology
from test_steps_join import INTERVAL, M, T, _run, pay, settle

from stream_orch.steps.base import Event


def settle_without(pid: str, t: int, offset: int, **fields) -> Event:
    value = {"payment_id": pid, "ts": t, **fields}
    return Event(value, pid.encode(), b"{}", [], "settlements", 0, offset, t, 0, "settlements", 0, offset)


async def test_an_unmatched_left_record_carries_the_declared_fields_as_null():
    step, ctx = build({**INTERVAL, "how": "left", "fields": ["amount", "method"]}), FakeContext()
    out = await _run(
        step, [[pay("P1", T, 1), pay("P2", T, 2)], [settle_without("P2", T + M, 3, amount=9.5)]], ctx
    )
    # matched: the settlement has no `method`, so it is null too
    assert [e.value for e in out] == [
        {"payment_id": "P2", "ts": T, "amount": 10.0, "settled_amount": 9.5, "settled_method": None,
         "join_status": "matched"}
    ]  # fmt: skip
    out = await _run(step, [[settle("X", T + 40 * M, 4)]], ctx)  # past P1's bound
    assert [e.value for e in out] == [
        {"payment_id": "P1", "ts": T, "amount": 10.0, "settled_amount": None, "settled_method": None,
         "join_status": "unmatched"}
    ]  # fmt: skip


async def test_without_fields_the_other_topics_schema_declares_them():
    topo = topology(
        topics={"payments": {"schema": "payment"}, "settlements": {"schema": "settlement"}, "out": {}},
        nodes={"n": {"input": "payments", "routes": [{"to": "out"}]}},
    )
    spec = {k: v for k, v in INTERVAL.items() if k != "fields"}
    step, ctx = build({**spec, "how": "left"}, topo), FakeContext()
    await _run(step, [[pay("P1", T, 1)]], ctx)
    out = await _run(step, [[settle("X", T + 40 * M, 4)]], ctx)
    assert out[0].value == {
        "payment_id": "P1", "ts": T, "amount": 10.0, "settled_settlement_id": None,
        "settled_payment_id": None, "settled_amount": None, "settled_currency": None, "settled_ts": None,
        "join_status": "unmatched",
    }  # fmt: skip


async def test_a_left_field_of_the_same_name_keeps_its_value_when_unmatched():
    step, ctx = (
        build({**INTERVAL, "how": "left", "prefix": "", "fields": ["amount", "method"]}),
        FakeContext(),
    )
    await _run(step, [[pay("P1", T, 1, 25.0)]], ctx)
    out = await _run(step, [[settle("X", T + 40 * M, 4)]], ctx)
    assert out[0].value == {
        "payment_id": "P1",
        "ts": T,
        "amount": 25.0,
        "method": None,
        "join_status": "unmatched",
    }


async def test_an_unmatched_as_of_record_carries_them_too():
    spec = {**INTERVAL, "kind": "as_of", "before": 0, "after": 0, "tolerance": "1m", "how": "left"}
    step, ctx = build(spec), FakeContext()
    out = await _run(step, [[pay("P1", T, 1)]], ctx)
    assert out[0].value == {
        "payment_id": "P1",
        "ts": T,
        "amount": 10.0,
        "settled_amount": None,
        "join_status": "unmatched",
    }
