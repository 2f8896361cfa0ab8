"""Consumer-group offsets set from outside the group, and groups deleted: where a shadow run
starts (`run --shadow [--from-time]`) and what `shadow delete` removes.

A group's offsets can only be committed from outside while the group has no members: the
callers do it before the shadow's worker joins, or after it has stopped.
"""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import DeleteGroupsRequest

from stream_orch.settings import Settings
from stream_orch.transport import clients
from stream_orch.transport.connect import start_client

# GROUP_ID_NOT_FOUND: nothing to delete
_GROUP_ID_NOT_FOUND = 69


async def partitions_of(settings: Settings, topics: list[str]) -> list[TopicPartition]:
    """Every partition of ``topics`` (those the broker knows)."""
    consumer = clients.reader(settings.kafka_client_args())
    await start_client(consumer, settings)
    try:
        found = []
        for topic in topics:
            parts = consumer.partitions_for_topic(topic) or await _partitions(consumer, topic)
            found += [TopicPartition(topic, p) for p in sorted(parts)]
        return found
    finally:
        await consumer.stop()


async def _partitions(consumer: Any, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # a topic not cached yet
    return consumer.partitions_for_topic(topic) or set()


async def committed(settings: Settings, group: str) -> dict[TopicPartition, int]:
    """The offsets ``group`` has committed (partitions without one are absent)."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_args())
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp: om.offset for tp, om in offsets.items() if om.offset >= 0}


async def offsets_at(
    settings: Settings, partitions: list[TopicPartition], timestamp_ms: int
) -> dict[TopicPartition, int]:
    """Per partition the first offset whose record timestamp is at or after ``timestamp_ms`` (the
    broker's ListOffsets by time); the end offset where no record is that recent."""
    consumer = clients.reader(settings.kafka_client_args())
    await start_client(consumer, settings)
    try:
        found = await consumer.offsets_for_times(dict.fromkeys(partitions, timestamp_ms))
        end = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return {tp: found[tp].offset if found.get(tp) is not None else end[tp] for tp in partitions}


async def end_offsets(settings: Settings, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    consumer = clients.reader(settings.kafka_client_args())
    await start_client(consumer, settings)
    try:
        return await consumer.end_offsets(partitions) if partitions else {}
    finally:
        await consumer.stop()


async def commit(settings: Settings, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit ``offsets`` for ``group`` (which must have no members: it is not joined)."""
    if not offsets:
        return
    consumer = clients.consumer(settings.kafka_client_args(), group_id=group)
    await start_client(consumer, settings)
    try:
        consumer.assign(list(offsets))
        await consumer.commit(dict(offsets))
    finally:
        await consumer.stop()


async def delete_groups(settings: Settings, groups: list[str]) -> list[str]:
    """Delete ``groups`` (each must have no members); returns those that existed."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_args())
    await admin.start()
    deleted = []
    try:
        for group in groups:
            coordinator = await admin.find_coordinator(group)
            response = await admin._send_request_to_node(coordinator, DeleteGroupsRequest([group]))
            for _name, code in response.results:
                if code == 0:
                    deleted.append(group)
                elif code != _GROUP_ID_NOT_FOUND:
                    raise for_code(code)(f"deleting consumer group {group}")
    finally:
        await admin.close()
    return deleted
