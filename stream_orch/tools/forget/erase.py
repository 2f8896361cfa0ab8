"""The Kafka side of ``stream-orch forget``: find the subject's entries, tombstone them.

Each chosen table's topic (its changelog, or the topic feeding it) is read from its beginning to
its end, every partition, keeping the keys of the subject (the plan's predicate) whose latest
record is a value; each gets a tombstone in the partition that holds it (a changelog partition is
the node input's partition, not the key's hash). A compacted topic holds about one record per
live key, so this reads what a restore reads.

Running workers: a worker holds its partitions' entries in local stores, and reads its changelogs
only when it restores a partition (taking it over, restarting). A tombstone written under a
running worker would reach its store only at its next restore, and a batch it commits meanwhile
could write the subject's entry again. So tables a step writes are erased only while the nodes
that write them have no running worker (their consumer groups have no members): then every
worker that starts restores from the changelog, tombstones included, before processing. The
groups are checked again after writing, and a worker that joined meanwhile is reported. Tables
fed by a topic need no such care: every worker follows its topic and applies the tombstone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import ConsumerRecord, TopicPartition

from stream_orch.errors import UserError
from stream_orch.settings import Settings
from stream_orch.tools.forget.plan import Plan, Target
from stream_orch.transport import clients
from stream_orch.transport.connect import start_client
from stream_orch.transport.offsets import groups_with_members, partitions_of
from stream_orch.transport.reading import read_until_end

READ_TIMEOUT_S = 600.0
MEMBERS_WAIT_S = 15.0  # a stopped worker with a static member id stays a member for its session (10 s)

Found = dict[str, list[tuple[int, bytes]]]  # table -> (partition, key) of live entries


async def _read_whole(
    settings: Settings,
    partitions: list[TopicPartition],
    handle: Callable[[ConsumerRecord[bytes, bytes]], None],
) -> None:
    """Every committed record of ``partitions`` up to their end now, through ``handle``."""
    if not partitions:
        return
    consumer = clients.reader(settings.kafka_client_args())
    await start_client(consumer, settings)
    try:
        await read_until_end(consumer, partitions, handle, timeout_s=READ_TIMEOUT_S)
    finally:
        await consumer.stop()


async def find(settings: Settings, plan: Plan) -> Found:
    """The subject's live entries of every chosen table."""
    found: Found = {}
    for target in plan.targets:
        found[target.table] = await _live_keys(settings, target)
    return found


async def _live_keys(settings: Settings, target: Target) -> list[tuple[int, bytes]]:
    partitions = await partitions_of(settings, [target.topic])  # none: never created, never written
    live: dict[tuple[int, bytes], bool] = {}
    match = target.match

    def handle(record: ConsumerRecord[bytes, bytes]) -> None:
        raw = record.key
        if raw is None:
            return
        try:
            key = raw.decode()
        except UnicodeDecodeError:
            return  # tables' keys are text; a foreign record is not the subject's
        if match(key):
            live[(record.partition, raw)] = record.value is not None

    await _read_whole(settings, partitions, handle)
    return sorted(slot for slot, alive in live.items() if alive)


async def scan(settings: Settings, topics: list[str], field_name: str, value: str) -> dict[str, int]:
    """Per topic, how many of its records are the subject's: the record key is the value, or the
    value is a JSON object whose ``field_name`` is it (Avro values are matched by key only). Reads
    every topic whole: as costly as its retention is long, so only with ``--scan``."""
    raw_value = value.encode()
    counts: dict[str, int] = {}
    for topic in topics:
        partitions = await partitions_of(settings, [topic])
        n = 0

        def handle(record: ConsumerRecord[bytes, bytes]) -> None:
            nonlocal n
            if record.key == raw_value:
                n += 1
                return
            if record.value is None or record.value[:1] != b"{":
                return
            try:
                data = orjson.loads(record.value)
            except orjson.JSONDecodeError:
                return  # not JSON: untrusted bytes, matched by key only
            found = data.get(field_name) if isinstance(data, dict) else None
            if found is not None and (found == value or str(found) == value):
                n += 1

        await _read_whole(settings, partitions, handle)
        counts[topic] = n
    return counts


async def ensure_stopped(settings: Settings, plan: Plan, *, wait_s: float = MEMBERS_WAIT_S) -> None:
    """One line and no erasure when a node holding a chosen table has running workers."""
    running = await groups_with_members(settings, plan.groups, wait_s=wait_s)
    if running:
        raise UserError(
            f"forget: stop the workers of {plan.topology} first: consumer group(s) {', '.join(running)} "
            "have members (a running worker keeps the subject's entries in its local store until it "
            "restores; see README 'Erasure requests')"
        )


async def tombstone(settings: Settings, plan: Plan, found: Found) -> int:
    """A tombstone for every entry found, in its partition; returns how many were written."""
    sends: list[Any] = []
    producer = clients.producer(settings.kafka_client_args())
    await start_client(producer, settings)
    try:
        for target in plan.targets:
            for partition, key in found.get(target.table, []):
                sends.append(await producer.send(target.topic, None, key=key, partition=partition))
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    return len(sends)


async def joined_meanwhile(settings: Settings, plan: Plan) -> list[str]:
    """The groups that got members while the tombstones were written (checked without waiting)."""
    return await groups_with_members(settings, plan.groups, wait_s=0.0)
