"""enrich over a topic-fed table (``TopicRows.rows``) keeps the fields it copies per key: the same
records, rejections, retries and drops as the lookup per record, across row updates and deletes."""

from __future__ import annotations

import asyncio
import copy

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from step_harness import FakeContext, MemoryTable, build

from stream_orch.state.topic_rows import TopicRows
from stream_orch.steps.base import Event

KEYS = ["C-1", "C-2", "C-3", 7]
FIELDS = ["name", "tier", "avg"]
rows = st.one_of(
    st.none(),  # a tombstone: the key has no row
    st.just([1, 2]),  # a row that is not a record
    st.dictionaries(st.sampled_from([*FIELDS, "other"]), st.integers(0, 3), max_size=4),
)
# batches of records (their key, absent for None), with the rows written before each batch
batches = st.lists(
    st.tuples(
        st.lists(st.tuples(st.sampled_from(["C-1", "C-2", "C-3", "7"]), rows), max_size=3),
        st.lists(st.one_of(st.none(), st.sampled_from(KEYS)), max_size=6),
    ),
    min_size=1,
    max_size=5,
)
specs = st.fixed_dictionaries(
    {
        "on_missing": st.sampled_from(["retry", "drop", "default"]),
        "prefix": st.sampled_from(["", "p_"]),
        "fields": st.sampled_from([FIELDS, ["tier", "tier"], ["absent"]]),
        "defaults": st.sampled_from([{}, {"tier": "low", "absent": 0}]),
    }
)


def _spec(options: dict) -> dict:
    return {"step": "enrich", "table": "profiles", "key": "customer_id", **options}


def _events(keys: list, offset: int) -> list[Event]:
    out = []
    for i, key in enumerate(keys):
        value = {"txn_id": f"t-{offset + i}"} if key is None else {"customer_id": key, "name": "x"}
        out.append(Event(value, offset=offset + i))
    return out


def _outcome(out: list[Event], ctx: FakeContext) -> list:
    return [
        [(e.offset, list(e.value.items())) for e in out],
        [(e.offset, reason) for e, reason, _ in ctx.rejected],
        [(e.offset, reason) for e, reason, _ in ctx.retried],
        [(e.offset, reason) for e, reason in ctx.dropped],
    ]


@settings(max_examples=150, deadline=None)
@given(specs, batches)
def test_kept_fields_match_the_lookup_per_record(options: dict, plan: list) -> None:
    kept_step, plain_step = build(_spec(options)), build(_spec(options))
    fed = TopicRows("profiles", "profiles.topic", orjson.loads)
    plain = MemoryTable("profiles", global_=True)  # no `rows`: the lookup per record
    offset = 0
    for writes, keys in plan:
        for key, row in writes:
            fed.apply(key.encode(), None if row is None else orjson.dumps(row))
            plain.set(key, None if row is None else copy.deepcopy(row), 0)
        ctx_kept, ctx_plain = FakeContext({"profiles": fed}), FakeContext({"profiles": plain})
        out_kept = asyncio.run(kept_step.run(_events(keys, offset), ctx_kept))
        out_plain = asyncio.run(plain_step.run(_events(keys, offset), ctx_plain))
        assert _outcome(out_kept, ctx_kept) == _outcome(out_plain, ctx_plain)
        offset += len(keys)


def test_a_replaced_row_is_copied_anew_and_the_kept_keys_are_bounded(monkeypatch) -> None:
    from stream_orch.steps import enrich

    monkeypatch.setattr(enrich, "_KEPT", 4)
    step = build(_spec({"fields": ["tier"], "on_missing": "drop"}))
    fed = TopicRows("profiles", "profiles.topic", orjson.loads)
    for n in range(10):
        fed.apply(f"C-{n}".encode(), orjson.dumps({"tier": n}))
    events = [Event({"customer_id": f"C-{n}"}) for n in range(10)]
    out = asyncio.run(step.run(events, FakeContext({"profiles": fed})))
    assert [e.value["tier"] for e in out] == list(range(10))
    assert 0 < len(step._kept) <= 4  # the kept path ran (a topic-fed table: WholeRowsTable)
    assert "C-9" in step._kept
    fed.apply(b"C-9", orjson.dumps({"tier": "new"}))
    out = asyncio.run(step.run([Event({"customer_id": "C-9"})], FakeContext({"profiles": fed})))
    assert out[0].value["tier"] == "new"
