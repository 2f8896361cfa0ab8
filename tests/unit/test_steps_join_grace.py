"""join (issue 20, part 4): `grace` is how late a record may arrive, and the code keeps to it.

A record whose own side's time (per partition, the records of that side before it) is past its
window's end plus grace (t + after + grace for the input, t + before + grace for the other topic,
Kafka Streams' rule) is late: it matches nothing and is dropped as `late_event`. A record at most
`grace` behind its side's time finds every partner that is not late, whatever the arrival
interleaving and batches. Checked against a reference that pairs the records directly.
"""

from __future__ import annotations

import random

from step_harness import FakeContext, build
from test_steps_join import INTERVAL, M, T, _run, pay, settle

from stream_orch.steps.base import Event

BEFORE, AFTER, GRACE = 30 * M, 30 * M, 5 * M


def side(make, n: int, rng: random.Random, reach: int, offset0: int) -> tuple[list[Event], set[int]]:
    """One topic's records in arrival order: mostly moving forward, some up to GRACE behind its
    newest time, some far beyond reach + grace behind; returns them and the offsets of the late."""
    out, late, newest = [], set(), T
    for i in range(n):
        roll = rng.random() if i else 1.0  # the first sets the side's time
        if roll < 0.2:
            t = newest - rng.randrange(0, GRACE + 1)
        elif roll < 0.3:
            t = newest - reach - GRACE - rng.randrange(1, 20 * M)
            late.add(offset0 + i)
        else:
            t = newest + rng.randrange(0, 4 * M)
        newest = max(newest, t)
        out.append(make(f"P{rng.randrange(15)}", t, offset0 + i))
    return out, late


def pairs(lefts: list[Event], rights: list[Event]) -> set[tuple[int, int]]:
    return {
        (lft.offset, rgt.offset)
        for lft in lefts
        for rgt in rights
        if lft.value["payment_id"] == rgt.value["payment_id"]
        and lft.value["ts"] - BEFORE <= rgt.value["ts"] <= lft.value["ts"] + AFTER
    }


def interleave(a: list[Event], b: list[Event], rng: random.Random) -> list[Event]:
    """Both topics' records in one arrival order, each topic's own order kept."""
    out, i, j = [], 0, 0
    while i < len(a) or j < len(b):
        if j >= len(b) or (i < len(a) and rng.random() < 0.5):
            out.append(a[i])
            i += 1
        else:
            out.append(b[j])
            j += 1
    return out


async def test_pairs_of_records_within_grace_all_match_and_late_records_none():
    for seed in range(6):
        rng = random.Random(seed)
        lefts, late_l = side(pay, 150, rng, AFTER, 0)
        rights, late_r = side(lambda p, t, o: settle(p, t, o, amount=o), 150, rng, BEFORE, 1000)
        assert late_l and late_r
        on_time_l = [e for e in lefts if e.offset not in late_l]
        on_time_r = [e for e in rights if e.offset not in late_r]
        expected = pairs(on_time_l, on_time_r)
        assert len(expected) > 100
        records = interleave(lefts, rights, rng)
        cut = rng.choice([1, 7, 40, 500])
        step, ctx = build({**INTERVAL, "fields": ["amount"], "grace": GRACE}), FakeContext()
        out = await _run(step, [records[i : i + cut] for i in range(0, len(records), cut)], ctx)
        got = [(e.source_offset, int(e.value["settled_amount"])) for e in out]
        assert len(got) == len(set(got)), "a pair emitted twice"
        assert set(got) == expected, seed
        late = sorted(e.offset for e, why in ctx.dropped if why == "late_event")
        assert late == sorted(late_l | late_r), seed


async def test_a_record_beyond_grace_does_not_match_a_partner_still_waiting():
    step, ctx = build({**INTERVAL, "before": "10m", "after": "10m", "grace": "1m"}), FakeContext()
    await _run(step, [[settle("P1", T + 12 * M, 1)]], ctx)  # waits until the payments pass T+23m
    out = await _run(step, [[pay("P2", T + 20 * M, 2), pay("P1", T + 8 * M, 3)]], ctx)
    assert out == [] and ctx.dropped[-1] == (ctx.dropped[-1][0], "late_event")  # T+8m+10m+1m < T+20m
    assert ctx.dropped[-1][0].offset == 3
    out = await _run(step, [[pay("P1", T + 9 * M, 4)]], ctx)  # its window ends + grace at T+20m: on time
    assert [(e.value["payment_id"], e.source_offset) for e in out] == [("P1", 4)]
