"""A sticky, co-partitioned assignor for the consumer groups of topology nodes.

Like the range assignor it hands out partition *numbers*: a member gets the same numbers of
every topic it reads (a node's input and its retry topics), so a retried record meets the state
of its partition again. Unlike it, a member keeps the numbers it held before the rebalance, up
to its fair share; only the excess moves. With range assignment the members' ranges shift on
every join or leave: in a rolling restart of three workers, a leave moved three of six
partitions (two of them cold, restored from the changelogs from the beginning) where one per
survivor is enough, and each move also re-fences its transactional producer.

Each member sends the numbers it held in its join metadata (``user_data``, a JSON list); the
leader computes the assignment. A member that sends nothing (a fresh process) gets what is
left over. The protocol is offered beside "range", so a group of old and new workers agrees on
range until every member offers this one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import orjson
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata

VERSION = 0


def _held(user_data: bytes | None) -> list[int]:
    """The numbers a member says it held; anything else (another client's data) is nothing."""
    try:
        value = orjson.loads(user_data or b"[]")
    except orjson.JSONDecodeError:
        return []
    return [p for p in value if isinstance(p, int)] if isinstance(value, list) else []


def sticky_numbers(numbers: Iterable[int], held: Mapping[str, Iterable[int]]) -> dict[str, list[int]]:
    """Partition ``numbers`` over the members of ``held`` (member -> numbers it held): balanced
    (shares differ by at most one), each member keeping as many of its own as its share allows,
    the members with the most kept getting the larger shares. Deterministic for the same input."""
    todo = sorted(set(numbers))
    members = sorted(held)
    if not members:
        return {}
    valid = set(todo)
    owned: dict[str, list[int]] = {}
    claimed: set[int] = set()
    for m in members:  # a number two members claim (a stale view) goes to the first
        mine = sorted(p for p in set(held[m]) if p in valid and p not in claimed)
        claimed.update(mine)
        owned[m] = mine
    base, extra = divmod(len(todo), len(members))
    by_kept = sorted(members, key=lambda m: (-len(owned[m]), m))
    share = {m: base + (1 if i < extra else 0) for i, m in enumerate(by_kept)}
    result = {m: owned[m][: share[m]] for m in members}
    taken = {p for ps in result.values() for p in ps}
    free = iter(p for p in todo if p not in taken)
    for m in members:
        while len(result[m]) < share[m]:
            result[m].append(next(free))
        result[m].sort()
    return result


class StickyRangeAssignor(AbstractPartitionAssignor):
    """One instance per consumer: it remembers what its consumer was last assigned."""

    name = "so-sticky-range"
    version = VERSION

    def __init__(self) -> None:
        self.held: list[int] = []

    def assign(  # type: ignore[override]
        self, cluster: ClusterMetadata, members: Mapping[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        partitions: dict[str, set[int]] = {}
        for meta in members.values():
            for topic in meta.subscription:
                found = cluster.partitions_for_topic(topic)
                if found:  # no metadata yet: nothing of it is handed out (as with range)
                    partitions[topic] = set(found)
        numbers = set().union(*partitions.values()) if partitions else set()
        shares = sticky_numbers(numbers, {m: _held(meta.user_data) for m, meta in members.items()})
        out = {}
        for member, meta in members.items():
            mine = set(shares.get(member, []))
            topics = sorted(
                (topic, sorted(mine & partitions[topic]))
                for topic in set(meta.subscription)
                if topic in partitions
            )
            out[member] = ConsumerProtocolMemberAssignment(VERSION, topics, b"")
        return out

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:  # type: ignore[override]
        return ConsumerProtocolMemberMetadata(VERSION, list(topics), orjson.dumps(self.held))

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:  # type: ignore[override]
        self.held = sorted({tp.partition for tp in assignment.partitions()})
