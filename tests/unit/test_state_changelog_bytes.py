"""A table's changelog records are the bytes orjson writes for each key's last value of the batch
(an int takes a shorter path than orjson: the bytes must not differ), and a store restored from
those records holds what the steps wrote, write by write."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_orch.state.store import TOMBSTONE, store_opener
from stream_orch.state.tables import LocalTable, _json

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)


@given(_json_values)
def test_a_value_is_written_as_orjson_writes_it(value: object) -> None:
    assert _json(value) == orjson.dumps(value)


@given(st.integers(min_value=-(2**70), max_value=2**70))
def test_an_int_orjson_refuses_is_refused(value: int) -> None:
    try:
        expected = orjson.dumps(value)
    except orjson.JSONEncodeError:
        with pytest.raises(orjson.JSONEncodeError):
            _json(value)
    else:
        assert _json(value) == expected


def test_a_tombstone_is_no_value() -> None:
    assert _json(TOMBSTONE) is None


_writes = st.lists(
    st.tuples(
        st.integers(0, 1),  # partition
        st.sampled_from(["a", "b", "c", "\x1e0001\x1ea"]),  # keys written again and again
        st.one_of(st.none(), st.integers(-5, 2**40), st.lists(st.integers(0, 9), max_size=3)),  # None: delete
    ),
    max_size=30,
)


@settings(max_examples=40, deadline=None)
@given(batches=st.lists(_writes, min_size=1, max_size=3))
def test_the_changelog_replayed_is_the_state_written_event_by_event(batches: list, tmp_path_factory) -> None:
    root: Path = tmp_path_factory.mktemp("rocks")
    table = LocalTable("t", "t.changelog", store_opener("rocksdb", root / "t", root=root))
    expected: dict[int, dict[str, object]] = {0: {}, 1: {}}  # each write applied as it happened
    log: list[tuple[int, bytes, bytes | None]] = []
    for p in (0, 1):
        table.open(p)
    for writes in batches:
        for partition, key, value in writes:
            if value is None:
                table.delete(key, partition)
                expected[partition].pop(key, None)
            else:
                table.set(key, value, partition)
                expected[partition][key] = value
        sealed = table.seal()
        records = sealed.changelog()
        for recs in records.values():  # one record per key and partition, however often written
            assert len({k for k, _, _, _ in recs}) == len(recs)
        log.extend((p, k, v) for p, recs in records.items() for k, v, _, _ in recs)
        sealed.land({})
    replayed: dict[int, dict[str, object]] = {0: {}, 1: {}}
    for partition, key, raw in log:  # what a restore from the changelog rebuilds
        if raw is None:
            replayed[partition].pop(key.decode(), None)
        else:
            replayed[partition][key.decode()] = orjson.loads(raw)
    assert replayed == expected
    for p in (0, 1):  # and the store landed the same
        assert dict(table._stores[p].items()) == expected[p]
    table.close()
