"""An interval join's left record whose bound the other side's time has already passed is not
buffered (join.py ``_left``): the outputs, their order, the drops and the table left behind are
those of the path that buffers it, on fixed record orders and batchings."""

from __future__ import annotations

import random
from typing import Any

import pytest
from step_harness import FakeContext, MemoryTable, build

from stream_orch.reliability import headers as H
from stream_orch.steps.base import Event
from stream_orch.steps.join import JoinStepImpl

S = 1000
M = 60 * S
T = 1_700_000_000_000
SPEC = {
    "step": "join", "topic": "settlements", "table": "pending", "key": "payment_id",
    "kind": "interval", "before": "5m", "after": "30m", "grace": "1m",
    "fields": ["settlement_id", "amount"], "prefix": "settled_",
}  # fmt: skip


def records(seed: int, n: int = 300, bounded: bool = False) -> tuple[list[Event], list[Event]]:
    """Payments and settlements on two partitions: most settled within the window, some late,
    some early, some never; each side out of order by up to 2 min (some beyond grace)."""
    rng = random.Random(seed)
    pays: list[Event] = []
    settles: list[Event] = []
    for i in range(n):
        p, pid, t = i % 2, f"P{i}", T + i * 10 * S + rng.randrange(0, 120 * S)
        value: dict[str, Any] = {"payment_id": pid, "ts": t, "amount": 10.0 + i}
        if bounded:
            value["due"] = t + rng.choice([10 * M, 30 * M, 40 * M])
        pays.append(Event(value, pid.encode(), b"{}", [], "payments", p, i, t, 0, "payments", p, i))
        for j in range(rng.choice([0, 1, 1, 1, 2])):
            st = t + rng.choice([-6 * M, -2 * M, 0, 5 * M, 29 * M, 31 * M, 45 * M]) + rng.randrange(0, 90 * S)
            sv = {"payment_id": pid, "ts": st, "settlement_id": f"S{i}.{j}", "amount": 10.0 + i}
            settles.append(
                Event(
                    sv,
                    pid.encode(),
                    b"{}",
                    [],
                    "settlements",
                    p,
                    2 * i + j,
                    st,
                    0,
                    "settlements",
                    p,
                    2 * i + j,
                )
            )
    return pays, settles


def ordered(pays: list[Event], settles: list[Event], ahead: int) -> list[Event]:
    """Each topic in offset order, merged by time with the settlements read ``ahead`` ms ahead."""

    def at(e: Event) -> int:
        return e.value["ts"] - (ahead if e.topic == "settlements" else 0)

    out: list[Event] = []
    rest = {
        "payments": sorted(pays, key=lambda e: e.offset),
        "settlements": sorted(settles, key=lambda e: e.offset),
    }
    while rest["payments"] or rest["settlements"]:
        nxt = min((q for q in rest.values() if q), key=lambda q: at(q[0]))
        out.append(nxt.pop(0))
    return out


def view(e: Event) -> tuple[Any, ...]:
    return (
        e.topic,
        e.partition,
        e.offset,
        e.key,
        e.raw_value,
        e.headers,
        e.value,
        e.source_offset,
        e.timestamp,
    )


async def both(step_of: Any, batches: list[list[Event]]) -> tuple[int, int]:
    """Runs the batches through the step with and without the skip; asserts the same outputs;
    the table writes of each."""
    runs = []
    for skip in (False, True):
        step, ctx = step_of(), FakeContext({"pending": MemoryTable("pending")})
        step.skip_passed = skip
        out: list[Event] = []
        for batch in batches:
            out += await step.run([dataclass_copy(e) for e in batch], ctx)
        runs.append(
            (
                [view(e) for e in out],
                [(e.offset, e.topic, why) for e, why in ctx.dropped],
                ctx.tables["pending"],
            )
        )
    (out0, drop0, table0), (out1, drop1, table1) = runs
    assert out1 == out0
    assert drop1 == drop0
    assert table1.data == table0.data
    assert any(v[6]["join_status"] == "unmatched" for v in out0) or "how" not in SPEC
    return table0.writes, table1.writes


def dataclass_copy(e: Event) -> Event:
    return Event(dict(e.value), e.key, e.raw_value, list(e.headers), e.topic, e.partition, e.offset,
                 e.timestamp, e.attempt, e.source_topic, e.source_partition, e.source_offset)  # fmt: skip


def batched(events: list[Event], seed: int) -> list[list[Event]]:
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(events):
        n = rng.choice([1, 7, 40, 150])
        out.append(events[i : i + n])
        i += n
    return out


@pytest.mark.parametrize("how", ["left", "inner"])
@pytest.mark.parametrize("bounded", [False, True])
@pytest.mark.parametrize("ahead", [0, -40 * M, 31 * M, 31 * M + 5 * S, 50 * M])
async def test_the_skip_gives_the_outputs_of_the_buffered_path(how: str, bounded: bool, ahead: int) -> None:
    spec = dict(SPEC, how=how)
    if bounded:
        spec["after"] = {"field": "due", "max": "40m"}
    pays, settles = records(3 + ahead % 7, bounded=bounded)
    events = ordered(pays, settles, ahead)
    writes, skipped = await both(lambda: build(spec), batched(events, ahead % 11))
    if ahead >= 31 * M:  # settlements ahead by the window or more: most payments skip the table
        assert skipped < writes
    else:
        assert skipped <= writes


def ev(topic: str, pid: str, t: int, offset: int, **fields: Any) -> Event:
    value = {"payment_id": pid, "ts": t, **fields}
    return Event(value, pid.encode(), b"{}", [], topic, 0, offset, t, 0, topic, 0, offset)


async def test_a_right_record_later_in_the_batch_finds_a_left_record_not_buffered() -> None:
    """A settlement more than grace behind its side's time (not late: before + grace), in the
    batch of the payment it matches: the payment is matched, not reported unmatched (as when it
    was buffered), and neither is written to the table."""
    step, ctx = build(dict(SPEC, how="left")), FakeContext()
    assert await step.run([ev("settlements", "X", T + 33 * M, 1)], ctx) == []
    writes = ctx.tables["pending"].writes
    behind = ev("settlements", "P", T + 29 * M, 2, settlement_id="S", amount=1.0)
    out = await step.run([ev("payments", "P", T, 5, amount=1.0), behind], ctx)
    assert [(e.value["join_status"], e.value["settled_settlement_id"]) for e in out] == [("matched", "S")]
    assert not any(k.startswith("L") for k in ctx.tables["pending"].data[0])
    out = await step.run([ev("payments", "Q", T + 1, 6, amount=1.0)], ctx)
    got = [(e.value["payment_id"], e.value["join_status"], e.value["settled_settlement_id"]) for e in out]
    assert got == [("Q", "unmatched", None)]
    # the settlement, its index entry, the watermarks and expiry marks; no payment
    data = ctx.tables["pending"].data[0]
    assert not any(k.startswith(("L", "\x1eL")) for k in data)
    assert ctx.tables["pending"].writes - writes < 8


@pytest.mark.parametrize("ahead", [0, 31 * M + 5 * S])
async def test_the_skip_with_per_source_watermarks(ahead: int) -> None:
    """A right side whose topic a re-keying node writes: its time is the minimum of its sources."""
    pays, settles = records(11)
    for e in settles:
        e.headers = [(H.WATERMARK, f"w/{e.offset % 2}/{e.value['ts']}".encode())]

    def step_of() -> JoinStepImpl:
        return JoinStepImpl(
            topic="settlements", table="pending", key="payment_id", before_ms=5 * M, after_ms=30 * M,
            grace_ms=M, how="left", fields=["settlement_id"],
            sources=(frozenset(), frozenset({"w/0", "w/1"})),
            clock=lambda: T,
        )  # fmt: skip

    writes, skipped = await both(step_of, batched(ordered(pays, settles, ahead), 5))
    assert skipped < writes if ahead else skipped <= writes
