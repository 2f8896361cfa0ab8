"""Waiting until a client's cluster metadata lists the topics it needs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError


async def wait_for_metadata(
    consumer: AIOKafkaConsumer, topics: Iterable[str], timeout_s: float = 30.0
) -> dict[str, set[int]]:
    """Wait until the consumer's cluster metadata lists the partitions of every topic.

    A consumer that joins its group while its metadata lacks a topic created a moment ago (a
    freshly started broker is slow to show it) has the range assignor hand out nothing for it,
    and stays idle until its next metadata refresh, five minutes later. Raises ``KafkaError``
    naming the topics still missing after ``timeout_s``."""
    wanted = list(topics)
    for topic in wanted:
        consumer._client.add_topic(topic)  # aiokafka has no public way to ask for a topic's metadata
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        found = {t: consumer.partitions_for_topic(t) or set() for t in wanted}
        missing = sorted(t for t, parts in found.items() if not parts)
        if not missing:
            return found
        if loop.time() > deadline:
            raise KafkaError(f"no partition metadata for {', '.join(missing)} after {timeout_s:.0f}s")
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)
