"""The first generation of a group whose members start together waits for all of them.

The supervisor of ``run --processes N`` lets its N members send their JoinGroup within a few ms of
each other (``runtime.membership.start_gate``). That is not enough on a broker with
``group.initial.rebalance.delay.ms=0`` (ours, for fast tests): the coordinator completes a join
with the members it has as soon as the first JoinGroup is in, and measured on this broker two
consumers 5 ms apart gave the first one all six partitions; it then worked alone until its next
heartbeat told it of the rebalance, and at_least_once re-read what it had not committed.

Here the classic protocol's own rules do the waiting. The leader (the only member told who is in a
generation) holds back its SyncGroup while the generation has fewer members than expected: a
JoinGroup that reaches the coordinator meanwhile moves the group back to PreparingRebalance, the
held SyncGroup is answered REBALANCE_IN_PROGRESS, and every member rejoins at once into a
generation holding them all. No member ever received the incomplete generation's assignment, so
nothing was fetched, revoked or read twice. The leader learns of that JoinGroup by heartbeats
(answered REBALANCE_IN_PROGRESS once it is in), every ``POLL_S``, and stops holding at once; it
holds at most ``hold_s``, then assigns to whoever is there (a member that never came).

Only a member started behind the supervisor's gate holds, and only for its first join: a member
restarted after a crash rejoins at once (static membership gives it its partitions back).

This reaches into aiokafka's group coordinator (``_perform_assignment``, ``_send_req``): the one
place where the leader sees the generation's members before answering. Checked against aiokafka
0.14 by ``tests/integration/test_supervise_first_join.py``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError, RebalanceInProgressError
from aiokafka.protocol.group import HeartbeatRequest

log = logging.getLogger(__name__)

POLL_S = 0.02
HOLD_S = 3.0


def hold_first_join(consumer: AIOKafkaConsumer, expected: int, hold_s: float = HOLD_S) -> Callable[[], None]:
    """Make ``consumer``, should it lead its group's first generation with fewer than ``expected``
    members, wait (at most ``hold_s``) for the rest before assigning. Call before ``subscribe``.

    Returns the release: call it once the consumer has its first assignment. A member that did
    not lead the first generation would otherwise still hold if it led a later one with fewer
    members (its partner gone for good): that generation must assign at once."""
    coordinator: Any = consumer._coordinator
    if expected < 2 or coordinator is None or not hasattr(coordinator, "_perform_assignment"):
        return _nothing
    assign = coordinator._perform_assignment

    def release() -> None:
        coordinator._perform_assignment = assign

    async def perform_assignment(response: Any) -> Any:
        coordinator._perform_assignment = assign  # only the first generation it leads
        members = len(response.members)
        if members < expected:
            deadline = asyncio.get_running_loop().time() + hold_s
            joined = await _wait_for_join(coordinator, response, deadline)
            log.info(
                "group %s: generation %d had %d of %d members; %s",
                coordinator.group_id,
                response.generation_id,
                members,
                expected,
                "another joined, rejoining together" if joined else "assigning to those present",
            )
        return await assign(response)

    coordinator._perform_assignment = perform_assignment
    return release


def _nothing() -> None:
    pass


async def _wait_for_join(coordinator: Any, response: Any, deadline: float) -> bool:
    """True once the coordinator answers a heartbeat with REBALANCE_IN_PROGRESS (a member joined
    after this generation formed); False at ``deadline`` or on any other answer but success."""
    loop = asyncio.get_running_loop()
    request = HeartbeatRequest(coordinator.group_id, response.generation_id, response.member_id)
    while loop.time() < deadline:
        await asyncio.sleep(POLL_S)
        try:
            answer = await coordinator._send_req(request)
        except KafkaError:
            return False
        if answer.error_code == RebalanceInProgressError.errno:
            return True
        if answer.error_code != 0:
            return False
    return False
