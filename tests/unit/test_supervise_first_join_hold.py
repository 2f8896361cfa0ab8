"""transport/first_join.py against a stand-in for aiokafka's group coordinator: the leader of an
incomplete first generation polls heartbeats until one says a member joined (or the bound), then
assigns; a complete generation and every later one assign at once. The real protocol on the real
broker: tests/integration/test_supervise_first_join.py."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiokafka.errors import RebalanceInProgressError

from stream_orch.transport.first_join import hold_first_join


class _Coordinator:
    group_id = "g"

    def __init__(self, answers: list[int]) -> None:
        self.answers = answers  # heartbeat error codes, in order (then 0)
        self.heartbeats = 0
        self.assigned: list[Any] = []

    async def _perform_assignment(self, response: Any) -> dict[str, bytes]:
        self.assigned.append(response)
        return {"m": b""}

    async def _send_req(self, request: Any) -> Any:
        self.heartbeats += 1
        code = self.answers.pop(0) if self.answers else 0
        return SimpleNamespace(error_code=code)


def _response(members: int, generation: int = 1) -> Any:
    return SimpleNamespace(
        members=[(f"m{i}", None, b"") for i in range(members)], generation_id=generation, member_id="m0"
    )


def _consumer(coordinator: _Coordinator) -> Any:
    return SimpleNamespace(_coordinator=coordinator)


async def test_incomplete_first_generation_waits_until_a_heartbeat_says_another_joined() -> None:
    coordinator = _Coordinator([0, 0, RebalanceInProgressError.errno])
    hold_first_join(_consumer(coordinator), 2)
    assert await coordinator._perform_assignment(_response(1)) == {"m": b""}
    assert coordinator.heartbeats == 3 and len(coordinator.assigned) == 1
    # the next generation (the one holding both) assigns at once, and so does any later one
    await coordinator._perform_assignment(_response(1, generation=2))
    assert coordinator.heartbeats == 3 and len(coordinator.assigned) == 2


async def test_complete_first_generation_assigns_at_once() -> None:
    coordinator = _Coordinator([])
    hold_first_join(_consumer(coordinator), 2)
    await coordinator._perform_assignment(_response(2))
    assert coordinator.heartbeats == 0 and len(coordinator.assigned) == 1


async def test_nobody_else_comes_the_hold_ends_at_its_bound() -> None:
    coordinator = _Coordinator([])
    hold_first_join(_consumer(coordinator), 3, hold_s=0.1)
    await coordinator._perform_assignment(_response(1))
    assert coordinator.heartbeats >= 1 and len(coordinator.assigned) == 1


async def test_a_failed_heartbeat_ends_the_hold() -> None:
    coordinator = _Coordinator([25])  # UNKNOWN_MEMBER_ID: the assignment's SyncGroup will tell
    hold_first_join(_consumer(coordinator), 2)
    await coordinator._perform_assignment(_response(1))
    assert coordinator.heartbeats == 1 and len(coordinator.assigned) == 1


async def test_alone_or_restarted_no_hold_is_installed() -> None:
    coordinator = _Coordinator([])
    original = coordinator._perform_assignment
    hold_first_join(_consumer(coordinator), 1)
    assert coordinator._perform_assignment == original


async def test_a_member_that_did_not_lead_the_first_generation_never_holds_later() -> None:
    """Its first assignment releases the hold: should its partner be gone for good and it lead
    a later generation alone, that generation assigns at once."""
    coordinator = _Coordinator([])
    release = hold_first_join(_consumer(coordinator), 2, hold_s=5.0)
    release()  # node.on_assigned: the first generation, led by the other member, is done
    await coordinator._perform_assignment(_response(1, generation=3))
    assert coordinator.heartbeats == 0 and len(coordinator.assigned) == 1
