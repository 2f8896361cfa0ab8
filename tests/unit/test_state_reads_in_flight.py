"""LocalTable.get reads the batches in flight newest first, whatever order they land or drop in.

``get`` walks a tuple of the in-flight overlays that seal, land and drop_pending keep (issue 25);
this holds it to a reference that reads the batches the way the table's other reads do (the
sealed batches oldest first, then the current one, a newer write winning; the stores below).
"""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from stream_orch.state.store import TOMBSTONE
from stream_orch.state.tables import LocalTable, Sealed

KEYS = ["a", "b", "c", "d"]
PARTITIONS = [0, 1]

ops = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.sampled_from(KEYS), st.integers(0, 9), st.sampled_from(PARTITIONS)),
        st.tuples(st.just("delete"), st.sampled_from(KEYS), st.just(0), st.sampled_from(PARTITIONS)),
        st.tuples(st.just("seal"), st.just(""), st.just(0), st.just(0)),
        st.tuples(st.just("land"), st.just(""), st.integers(0, 3), st.just(0)),
        st.tuples(st.just("drop"), st.just(""), st.just(0), st.just(0)),
    ),
    min_size=4,
    max_size=40,
)


def _reference(table: LocalTable, pending: list[Sealed], key: str, partition: int) -> Any:
    value: Any = TOMBSTONE
    store = table._stores[partition]
    found = store.get(key, TOMBSTONE)
    if found is not TOMBSTONE:
        value = found
    for overlay in [*(s.overlay for s in pending), table._writes]:  # oldest first: newer wins
        writes = overlay.get(partition, {})
        if key in writes:
            value = writes[key]
    return None if value is TOMBSTONE else value


@settings(max_examples=500, deadline=None)
@given(ops)
# the newer of two batches in flight lands first: the older one still shadows the store
@example([("set", "a", 1, 0), ("seal", "", 0, 0), ("set", "a", 2, 0), ("seal", "", 0, 0), ("land", "", 1, 0)])
def test_get_reads_the_newest_batch_in_flight(steps: list[tuple[str, str, int, int]]) -> None:
    table = LocalTable("t", "t.changelog")
    for p in PARTITIONS:
        table.open(p)
    pending: list[Sealed] = []
    for op, key, n, partition in steps:
        if op == "set":
            table.set(key, n, partition)
        elif op == "delete":
            table.delete(key, partition)
        elif op == "seal":
            sealed = table.seal()
            sealed.changelog()
            pending.append(sealed)
        elif op == "land" and pending:
            pending.pop(n % len(pending)).land({})  # not always the oldest
        elif op == "drop":
            table.drop_pending()
            pending = []
        for k in KEYS:
            for p in PARTITIONS:
                assert table.get(k, p) == _reference(table, pending, k, p)
