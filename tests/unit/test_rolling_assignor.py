"""The sticky co-partitioned assignor: balanced shares, members keep what they held, every member
gets the same numbers of each topic it reads, and garbage in the join metadata is ignored."""

from __future__ import annotations

import orjson
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata
from hypothesis import given
from hypothesis import strategies as st

from stream_orch.transport.assignor import StickyRangeAssignor, sticky_numbers


def test_a_leave_moves_only_the_leavers_partitions() -> None:
    got = sticky_numbers(range(6), {"a": [0, 1], "c": [2, 3]})  # b (4, 5) left
    assert sorted(got["a"])[:2] == [0, 1] and sorted(got["c"])[:2] == [2, 3]
    assert sorted(got["a"] + got["c"]) == list(range(6))


def test_a_returning_member_gets_the_excess_and_the_others_keep_their_own() -> None:
    got = sticky_numbers(range(6), {"a": [0, 1, 4], "b": [], "c": [2, 3, 5]})
    assert got == {"a": [0, 1], "b": [4, 5], "c": [2, 3]}


def test_garbage_and_stale_claims() -> None:
    got = sticky_numbers(range(4), {"a": [0, 1, 9], "b": [1, 2]})  # 9 is gone; 1 claimed twice
    assert got["a"] == [0, 1] and got["b"] == [2, 3]


@given(
    n=st.integers(0, 40),
    held=st.dictionaries(st.sampled_from("abcdefg"), st.lists(st.integers(-2, 45), max_size=12), min_size=1),
)
def test_balanced_complete_disjoint_and_keeps_what_it_can(n: int, held: dict[str, list[int]]) -> None:
    got = sticky_numbers(range(n), held)
    flat = [p for ps in got.values() for p in ps]
    assert sorted(flat) == list(range(n))  # every number once
    sizes = [len(ps) for ps in got.values()]
    assert max(sizes) - min(sizes) <= 1
    kept = sum(len(set(got[m]) & set(held[m])) for m in held)
    # the unique valid claims, capped by the share each member got, all stay
    first: dict[int, str] = {}
    for m in sorted(held):
        for p in sorted(set(held[m])):
            if 0 <= p < n:
                first.setdefault(p, m)
    claims = {m: sum(1 for owner in first.values() if owner == m) for m in held}
    assert kept >= sum(min(claims[m], len(got[m])) for m in held)  # nobody loses a keepable one
    assert got == sticky_numbers(range(n), held)  # deterministic


class _Cluster:
    def __init__(self, topics: dict[str, int]) -> None:
        self.topics = topics

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(range(self.topics[topic])) if topic in self.topics else None


def test_assign_co_partitions_topics_and_round_trips_the_held_numbers() -> None:
    members = {}
    for name, held in {"m1": [0, 1], "m2": [2, 3], "m3": b"not json"}.items():
        user_data = held if isinstance(held, bytes) else orjson.dumps(held)
        members[name] = ConsumerProtocolMemberMetadata(0, ["in", "in.retry", "missing"], user_data)
    out = StickyRangeAssignor().assign(_Cluster({"in": 6, "in.retry": 6}), members)  # type: ignore[arg-type]
    per_member = {m: dict(a.assignment) for m, a in out.items()}
    for topics in per_member.values():
        assert topics["in"] == topics["in.retry"] and "missing" not in topics
    assert per_member["m1"]["in"] == [0, 1] and per_member["m2"]["in"] == [2, 3]
    assert per_member["m3"]["in"] == [4, 5]
    member = StickyRangeAssignor()
    member.on_assignment(out["m3"])
    assert orjson.loads(member.metadata(["in"]).user_data) == [4, 5]
