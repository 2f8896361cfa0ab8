"""Which of several consumer groups have members (`forget` refuses while a node holding a chosen
table runs), asked of the real broker while two groups each have a running consumer. aiokafka
0.14 cannot decode this broker's DescribeGroups answer for several groups with members at once
(its connection fails with "Buffer underrun decoding string"), so a topology whose two nodes hold
chosen tables got a connection error instead of the one line naming both groups."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer
from kafka_helpers import create_topic

from stream_orch.settings import Settings
from stream_orch.transport.offsets import groups_with_members
from tests import reliability_harness as rh
from tests.topology_harness import BOOTSTRAP

pytestmark = pytest.mark.integration


async def test_two_groups_with_members_are_both_named() -> None:
    suffix = uuid.uuid4().hex[:8]
    topic = f"members-{suffix}"
    await create_topic(BOOTSTRAP, topic, partitions=2)
    groups = [f"members-{suffix}.a", f"members-{suffix}.b", f"members-{suffix}.never"]
    consumers = [AIOKafkaConsumer(topic, bootstrap_servers=BOOTSTRAP, group_id=g) for g in groups[:2]]
    try:
        for c in consumers:
            await c.start()
        for c in consumers:
            await c.getmany(timeout_ms=3000)  # joined: the group is Stable with this member
        busy = await groups_with_members(Settings(bootstrap_servers=BOOTSTRAP), groups)
        assert busy == sorted(groups[:2])
    finally:
        for c in consumers:
            await c.stop()
        await rh.delete_topics([topic])
