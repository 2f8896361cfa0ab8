"""A static member stopped cleanly leaves its group (LeaveGroup v3, sent by transport/leave_group.py),
so the remaining member takes its partitions within a heartbeat, not after the session timeout.

Two node consumers (the runtime's own, with static ids) share a 4-partition topic; one stops.
Without the leave, the survivor waits out the 10 s session (SESSION_TIMEOUT_MS): the bound
asserted here (6 s) is generous against the ~3 s heartbeat and still well below it.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from stream_orch.transport import clients
from tests.kafka_helpers import DEFAULT_BOOTSTRAP, create_topic, unique_name

pytestmark = pytest.mark.integration

PARTITIONS = 4
TAKEOVER_BOUND_S = 6.0


async def _until(members, done, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        await asyncio.gather(*(m.getmany(timeout_ms=100) for m in members))


async def _takeover_seconds(leave: bool) -> tuple[float, int]:
    topic = unique_name("membership-leave")
    await create_topic(DEFAULT_BOOTSTRAP, topic, PARTITIONS)
    args = {"bootstrap_servers": DEFAULT_BOOTSTRAP}
    members = [
        clients.node_consumer(args, topic, batch_size=100, instance_id=f"{topic}-{i}") for i in range(2)
    ]
    try:
        for member in members:
            await member.start()
            member.subscribe([topic])
        await _until(members, lambda: all(len(m.assignment()) == PARTITIONS // 2 for m in members), 30)
        assert all(len(m.assignment()) == PARTITIONS // 2 for m in members), "the group never settled"
        leaving, survivor = members
        await clients.stop_consumer(leaving, leave=leave)
        started = time.monotonic()
        await _until([survivor], lambda: len(survivor.assignment()) == PARTITIONS, 20)
        return time.monotonic() - started, len(survivor.assignment())
    finally:
        for member in members:
            await clients.stop_consumer(member)
        admin = AIOKafkaAdminClient(bootstrap_servers=DEFAULT_BOOTSTRAP)
        await admin.start()
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()


async def test_static_member_leaving_hands_its_partitions_over_within_a_heartbeat() -> None:
    seconds, owned = await _takeover_seconds(leave=True)
    assert owned == PARTITIONS
    assert seconds < TAKEOVER_BOUND_S, f"takeover took {seconds:.1f} s: the member did not leave"


async def test_static_member_stopping_without_leave_keeps_its_partitions_for_the_session() -> None:
    """The other side of the setting (STREAM_ORCH_LEAVE_GROUP_ON_STOP=false): the partitions wait
    for the member's return, which is what a restart within the session wants."""
    seconds, owned = await _takeover_seconds(leave=False)
    assert owned == PARTITIONS
    assert seconds >= TAKEOVER_BOUND_S, f"takeover took {seconds:.1f} s without a leave"
