"""A static member that stops cleanly hands its partitions over at once: with
``stop_consumer(leave=True)`` the other member of the group has all of them well before the 10 s
session timeout would have freed them; without it (aiokafka's own stop) it waits the session out."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream_orch.transport import clients
from tests.topology_harness import BOOTSTRAP

pytestmark = pytest.mark.integration

PARTITIONS = 6


async def _handover_s(leave: bool) -> float:
    topic = f"static-leave-{uuid.uuid4().hex[:8]}"
    group = f"{topic}.group"
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    args = {"bootstrap_servers": BOOTSTRAP}
    members = [
        clients.node_consumer(args, group, batch_size=100, instance_id=f"{group}-{i}") for i in range(2)
    ]
    spinning = []
    try:
        for c in members:
            c.subscribe([topic])
            await c.start()

        async def spin(c) -> None:
            while True:
                await c.getmany(timeout_ms=100)

        spinning = [asyncio.create_task(spin(c)) for c in members]
        deadline = time.monotonic() + 30
        while not all(c.assignment() for c in members) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert all(c.assignment() for c in members), "the two members never shared the partitions"
        spinning[0].cancel()
        stopped = time.monotonic()
        await clients.stop_consumer(members[0], leave=leave)
        while len(members[1].assignment()) < PARTITIONS and time.monotonic() - stopped < 30:
            await asyncio.sleep(0.05)
        assert len(members[1].assignment()) == PARTITIONS
        return time.monotonic() - stopped
    finally:
        for task in spinning:
            task.cancel()
        await clients.stop_consumer(members[1])
        await admin.delete_topics([topic])
        await admin.close()


async def test_a_static_member_that_leaves_hands_over_before_the_session_ends() -> None:
    left = await _handover_s(leave=True)
    stayed = await _handover_s(leave=False)
    session_s = clients.SESSION_TIMEOUT_MS / 1000
    assert stayed >= session_s, f"without leaving, the partitions came back after {stayed:.1f} s"
    assert left < session_s / 2, f"leaving: {left:.1f} s (without: {stayed:.1f} s)"
