"""Consumer-group offsets set from outside the group, and groups deleted: where a shadow run
starts (`run --shadow [--from-time]`) and what `shadow delete` removes.

A group's offsets can only be committed from outside while the group has no members: the
callers do it before the shadow's worker joins, or after it has stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, for_code
from aiokafka.protocol.admin import DeleteGroupsRequest

from stream_orch.errors import UserError
from stream_orch.settings import Settings
from stream_orch.transport import clients
from stream_orch.transport.connect import start_client, unreachable

_NON_EMPTY_GROUP = 68
_GROUP_ID_NOT_FOUND = 69  # nothing to delete


@contextlib.asynccontextmanager
async def _admin(settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client, within ``request_timeout_s`` or one line saying Kafka is not there."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_args())
    try:
        await asyncio.wait_for(admin.start(), settings.request_timeout_s)
    except (TimeoutError, KafkaError, OSError) as exc:
        with contextlib.suppress(Exception):
            await admin.close()
        reason = "no answer" if isinstance(exc, TimeoutError) else "connection refused or host unknown"
        raise unreachable(settings, reason) from None
    try:
        yield admin
    finally:
        await admin.close()


async def partitions_of(settings: Settings, topics: list[str]) -> list[TopicPartition]:
    """Every partition of those of ``topics`` that exist (asked of the admin API, so that no
    topic is auto-created with the broker's defaults by asking)."""
    async with _admin(settings) as admin:
        existing = set(await admin.list_topics())
        wanted = [t for t in topics if t in existing]
        described = await admin.describe_topics(wanted) if wanted else []
    return sorted(
        TopicPartition(d["topic"], p["partition"]) for d in described for p in d.get("partitions") or []
    )


async def committed(settings: Settings, group: str) -> dict[TopicPartition, int]:
    """The offsets ``group`` has committed (partitions without one are absent)."""
    async with _admin(settings) as admin:
        offsets = await admin.list_consumer_group_offsets(group)
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
    async with _admin(settings) as admin:
        described = await admin.describe_consumer_groups([group])
    states = {item[2] for response in described for item in getattr(response, "groups", None) or []}
    if states - {"Empty", "Dead", ""}:
        raise _running(group, "it has members")
    consumer = clients.consumer(settings.kafka_client_args(), group_id=group)
    await start_client(consumer, settings)
    try:
        consumer.assign(list(offsets))
        await consumer.commit(dict(offsets))
    except KafkaError as exc:  # it got members meanwhile: only they may commit
        raise _running(group, type(exc).__name__) from None
    finally:
        await consumer.stop()


async def describe_groups(admin: AIOKafkaAdminClient, groups: list[str]) -> list[Any]:
    """The DescribeGroups entries of ``groups`` (group id at [1], state at [2], members at [5]),
    one request per group: aiokafka 0.14 cannot decode a broker's answer for several groups with
    members at once (its connection fails: "Buffer underrun decoding string")."""
    return [
        item
        for group in groups
        for response in await admin.describe_consumer_groups([group])
        for item in getattr(response, "groups", None) or []
    ]


async def groups_with_members(settings: Settings, groups: list[str], *, wait_s: float = 0.0) -> list[str]:
    """Those of ``groups`` that have members (a running worker), after waiting up to ``wait_s`` for
    them to leave (a stopped worker with a static member id stays one until its session expires)."""
    if not groups:
        return []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    async with _admin(settings) as admin:
        while True:
            described = await describe_groups(admin, groups)
            busy = sorted(item[1] for item in described if item[2] not in ("Empty", "Dead", ""))
            if not busy or loop.time() >= deadline:
                return busy
            await asyncio.sleep(1.0)


def _running(group: str, why: str) -> UserError:
    return UserError(
        f"cannot set the start offsets of consumer group {group} ({why}): "
        "is it running? Stop its workers first"
    )


async def delete_groups(settings: Settings, groups: list[str], *, wait_s: float = 30.0) -> list[str]:
    """Delete ``groups``; returns those that existed. A group still with members is waited for up
    to ``wait_s`` (a stopped worker with a static member id stays a member until its session
    times out, 10 s), then refused with one line."""
    deleted = []
    async with _admin(settings) as admin:
        for group in groups:
            deadline = asyncio.get_running_loop().time() + wait_s
            while True:
                coordinator = await admin.find_coordinator(group)
                response = await admin._send_request_to_node(coordinator, DeleteGroupsRequest([group]))
                code = response.results[0][1]
                if code != _NON_EMPTY_GROUP or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(1.0)
            if code == 0:
                deleted.append(group)
            elif code == _NON_EMPTY_GROUP:
                raise UserError(f"consumer group {group} still has members: stop the shadow's workers first")
            elif code != _GROUP_ID_NOT_FOUND:
                raise UserError(f"consumer group {group} not deleted: {for_code(code).__name__}")
    return deleted


async def delete_topics(settings: Settings, topics: list[str]) -> list[str]:
    """Delete those of ``topics`` that exist; returns them."""
    async with _admin(settings) as admin:
        existing = set(await admin.list_topics())
        gone = [t for t in topics if t in existing]
        if gone:
            await admin.delete_topics(gone)
    return gone
