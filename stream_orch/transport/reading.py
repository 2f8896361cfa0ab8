"""Reading partitions from their beginning to the end offsets they had when reading started:
restoring a table from its changelog, loading a global table, inspecting or replaying a DLQ."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from stream_orch.transport import clients

# How long one fetch waits for records before the positions are looked at again. A tail that
# holds only transaction markers (a store checkpointed at its last batch's commit marker, under
# exactly-once) returns no record at all: its end is seen only from the position, and a poll of
# 500 ms put half a second into every take-over and every global table load.
POLL_MS = 50


async def read_to_end(
    client_args: dict[str, Any],
    partitions: list[TopicPartition],
    apply: Callable[[ConsumerRecord[bytes, bytes]], Any],
    *,
    timeout_s: float = 120.0,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """:func:`read_until_end` with a consumer of its own, started and stopped here."""
    if not partitions:
        return 0
    consumer = clients.reader(client_args)
    await consumer.start()
    try:
        return await read_until_end(consumer, partitions, apply, timeout_s=timeout_s, progress=progress)
    finally:
        await consumer.stop()


async def read_until_end(
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    handle: Callable[[ConsumerRecord[bytes, bytes]], Any],
    *,
    timeout_s: float | None = None,
    idle_timeout_s: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    past_end: bool = False,
    max_records: int = 10_000,
    start: dict[TopicPartition, int] | None = None,
    until: dict[TopicPartition, int] | None = None,
    poll_ms: int = POLL_MS,
) -> int:
    """Assign ``partitions`` to the started, group-less ``consumer`` and call ``handle`` for every
    record from the beginning up to the end offsets seen at the start (records written meanwhile
    are left alone, unless ``past_end``: a reader that goes on following the partitions with this
    consumer must not skip what a fetch returned beyond them); stop early when ``handle`` returns
    True; ``start`` gives partitions an offset to start from instead, ``until`` one to stop before
    (when it is below their end). Returns how many records it handled.

    ``progress`` gets (records handled since its last call, records still to read) after every
    fetch. Raises ``TimeoutError`` after ``timeout_s`` in all, or after ``idle_timeout_s`` without
    a record while some are still due."""
    consumer.assign(partitions)
    end = await consumer.end_offsets(partitions)
    for tp, offset in (until or {}).items():
        end[tp] = min(end[tp], offset)
    await consumer.seek_to_beginning(*partitions)
    for tp, offset in (start or {}).items():
        consumer.seek(tp, offset)
    # A compacted or truncated log can start at its end (everything deleted and cleaned up).
    position = {tp: await consumer.position(tp) for tp in partitions}
    remaining = {tp for tp in partitions if position[tp] < end[tp]}
    loop = asyncio.get_running_loop()
    deadline = None if timeout_s is None else loop.time() + timeout_s
    idle_deadline = None if idle_timeout_s is None else loop.time() + idle_timeout_s
    count = reported = 0
    while remaining:
        now = loop.time()
        if deadline is not None and now > deadline:
            raise TimeoutError(f"reading {_names(remaining)} took over {timeout_s:.0f}s")
        batches = await consumer.getmany(*remaining, timeout_ms=poll_ms, max_records=max_records)
        if idle_deadline is not None:
            if batches:
                idle_deadline = loop.time() + idle_timeout_s  # type: ignore[operator]
            elif loop.time() > idle_deadline:
                raise TimeoutError(f"no records from {_names(remaining)} for {idle_timeout_s:.0f}s")
        for tp, records in batches.items():
            stop_at = None if past_end else end[tp]
            for record in records:
                if stop_at is not None and record.offset >= stop_at:
                    break
                count += 1
                if handle(record) is True:
                    return count
            if records:
                position[tp] = records[-1].offset + 1
        for tp in list(remaining):
            if position[tp] < end[tp]:  # also past gaps that compaction left at the end
                position[tp] = await consumer.position(tp)
            if position[tp] >= end[tp]:
                remaining.discard(tp)
        if progress is not None:
            progress(count - reported, sum(end[tp] - position[tp] for tp in remaining))
            reported = count
    return count


def _names(partitions: set[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(partitions))
