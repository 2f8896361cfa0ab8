"""wait_for_metadata on the real broker: a node subscribes only once its consumer's metadata lists
every topic (else the range assignor gives it nothing for a topic created a moment ago)."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer
from kafka_helpers import create_topic

from stream_orch.transport.metadata import wait_for_metadata

pytestmark = pytest.mark.integration


async def test_partitions_of_a_topic_created_just_before(kafka_bootstrap: str, make_topic) -> None:
    a, b = make_topic("a"), make_topic("b")
    await create_topic(kafka_bootstrap, a, partitions=3)
    await create_topic(kafka_bootstrap, b, partitions=2)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
    await consumer.start()
    try:
        assert await wait_for_metadata(consumer, [a, b]) == {a: {0, 1, 2}, b: {0, 1}}
    finally:
        await consumer.stop()
