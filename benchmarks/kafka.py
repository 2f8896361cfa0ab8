"""Small aiokafka helpers the harness needs: topics in and out, and end offsets."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream_orch.transport.offsets import describe_groups

PARTITIONS = 6


async def create_topics(
    bootstrap: str, names: Iterable[str], *, partitions: int = PARTITIONS, compact: Iterable[str] = ()
) -> None:
    """Create fresh topics and wait until their metadata is visible (a benchmark must not race them)."""
    names = list(dict.fromkeys(names))
    compacted = set(compact)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        new = [
            NewTopic(n, partitions, 1, topic_configs={"cleanup.policy": "compact"} if n in compacted else {})
            for n in names
        ]
        await admin.create_topics(new, timeout_ms=15000)
        for _ in range(100):
            listed = set(await admin.list_topics())
            if all(n in listed for n in names):
                break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError(f"topics did not appear: {names}")
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, names: Iterable[str]) -> None:
    """Best effort: the broker is shared, so we delete only the topics this run created."""
    names = [n for n in dict.fromkeys(names) if n]
    if not names:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        todo = [n for n in names if n in existing]
        if todo:
            with contextlib.suppress(Exception):
                await admin.delete_topics(todo, timeout_ms=15000)
    finally:
        await admin.close()


async def sweep_topics(bootstrap: str, marker: str) -> int:
    """Delete every topic whose name contains ``marker`` (a run id): also the ones contenders
    derived themselves (changelogs, retry topics, Faust and Quix internals). Returns how many."""
    names = [t for t in await list_topics(bootstrap) if marker in t]
    await delete_topics(bootstrap, names)
    return len(names)


async def list_topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


class OffsetWatcher:
    """Sums the end offsets of some topics: how many records have been written to them so far.

    A ListOffsets request costs the broker little and does not read the records, so polling it
    every few tens of milliseconds measures a contender's output without competing for its CPU.
    """

    def __init__(self, bootstrap: str, topics: Iterable[str], partitions: int = PARTITIONS) -> None:
        self._tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        # read_committed: the end offset is then the last stable offset, so the records of an open
        # transaction are not counted before they are visible (no difference without transactions)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            request_timeout_ms=15000,
            isolation_level="read_committed",
        )

    async def __aenter__(self) -> OffsetWatcher:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def count(self) -> int:
        offsets = await self._consumer.end_offsets(self._tps)
        return sum(offsets.values())


async def committed_count(
    bootstrap: str, topics: Iterable[str], *, timeout_s: float, partitions: int = PARTITIONS
) -> tuple[int, int]:
    """(records, offsets): the records a read_committed consumer reads from the start of some
    topics up to their last stable offsets (control records and aborted records excluded), and
    the sum of those offsets. Bounded by ``timeout_s``: then the records read so far."""
    tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        count = 0
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            # the position also moves past the markers and aborted records read_committed skips
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= end[tp] for pos, tp in zip(positions, tps, strict=True)):
                break
            batches = await consumer.getmany(timeout_ms=200, max_records=50_000)
            count += sum(len(records) for records in batches.values())
        return count, sum(end.values())
    finally:
        await consumer.stop()


async def committed_at_least(
    bootstrap: str, topics: Iterable[str], expected: int, *, timeout_s: float
) -> tuple[int, int]:
    """:func:`committed_count` again until at least ``expected`` records are committed (the end
    offsets can reach ``expected`` while the last transactions are still open, as markers take
    offsets too); RuntimeError after ``timeout_s``."""
    deadline = time.perf_counter() + timeout_s
    while True:
        records, offsets = await committed_count(bootstrap, topics, timeout_s=timeout_s)
        if records >= expected:
            return records, offsets
        if time.perf_counter() > deadline:
            raise RuntimeError(f"only {records}/{expected} records committed within {timeout_s:.0f} s")
        await asyncio.sleep(0.5)


async def members_ready(bootstrap: str, prefix: str, members: int, interval_s: float = 0.1) -> float:
    """Wait until every consumer group ``prefix`` or ``prefix.*`` (a contender's groups) is Stable
    with at least ``members`` members, i.e. all its processes hold partitions; returns that moment
    (``time.perf_counter()``). Runs until cancelled when no such group ever forms."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        while True:
            with contextlib.suppress(Exception):  # the groups are being created: ask again
                names = [g[0] for g in await admin.list_consumer_groups() if _of(str(g[0]), prefix)]
                if names:
                    # one request per group (describe_groups says why): several at once left a
                    # two-node topology's entry (fraud) never seen ready
                    items = await describe_groups(admin, names)
                    if len(items) == len(names) and all(
                        i[2] == "Stable" and len(i[5]) >= members for i in items
                    ):
                        return time.perf_counter()
            await asyncio.sleep(interval_s)
    finally:
        await admin.close()


def _of(group: str, prefix: str) -> bool:
    return group == prefix or group.startswith(prefix + ".")
