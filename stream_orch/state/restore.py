"""Restoring local table partitions from their changelogs, from each store's checkpoint on.

A store's checkpoint is the next changelog offset it has not applied. It is trusted only while it
lies within the changelog partition's current log (beginning <= checkpoint <= end): a changelog
that was recreated or truncated under a store makes it a stranger, and the store is rebuilt from
the beginning. Records are applied in write batches, each with the checkpoint after its last
record, so a restore cut short by a crash resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import ConsumerRecord, TopicPartition

from stream_orch.state.store import TOMBSTONE, Store
from stream_orch.state.tables import LocalTable
from stream_orch.transport import clients
from stream_orch.transport.reading import read_until_end

log = logging.getLogger(__name__)

FLUSH_EVERY = 20_000  # records per store write while restoring
STABLE_WAIT_S = 5.0
RESTORE_TIMEOUT_S = 600.0

Progress = Callable[[int, int], None]


class _Applier:
    """Buffers changelog records per partition and writes them to the stores in batches."""

    def __init__(self, table: LocalTable) -> None:
        self.table = table
        self.stores: dict[int, Store] = {}
        self.buffer: dict[int, dict[str, Any]] = {}
        self.last: dict[int, int] = {}
        self.count = 0

    def __call__(self, record: ConsumerRecord[bytes, bytes]) -> None:
        if record.key is None:
            return
        writes = self.buffer.setdefault(record.partition, {})
        writes[record.key.decode()] = TOMBSTONE if record.value is None else orjson.loads(record.value)
        self.last[record.partition] = record.offset
        self.count += 1
        if len(writes) >= FLUSH_EVERY:
            self.flush(record.partition, record.offset + 1)

    def flush(self, partition: int, checkpoint: int) -> None:
        self.stores[partition].write(self.buffer.pop(partition, {}), checkpoint)


async def _stable_end(
    consumer: Any, tps: list[TopicPartition], checkpoints: dict[TopicPartition, int | None]
) -> dict[TopicPartition, int]:
    """The changelogs' end offsets (last stable offsets: read committed). A checkpoint beyond the
    end is usually a commit whose transaction markers are still being written: wait a little for
    the end to pass it before calling the store a stranger."""
    deadline = time.monotonic() + STABLE_WAIT_S
    while True:
        end = await consumer.end_offsets(tps)
        ahead = [tp for tp in tps if (c := checkpoints[tp]) is not None and c > end[tp]]
        if not ahead or time.monotonic() > deadline:
            return end
        await asyncio.sleep(0.1)


async def restore(
    client_args: dict[str, Any],
    table: LocalTable,
    partitions: list[int],
    *,
    progress: Progress | None = None,
    timeout_s: float = RESTORE_TIMEOUT_S,
) -> tuple[int, int]:
    """Open and bring up to date the stores of ``partitions``; returns (records read, records
    the stores already had: the size of what did not need reading)."""
    if not partitions:
        return 0, 0
    tps = [TopicPartition(table.changelog, p) for p in partitions]
    consumer = clients.reader(client_args)
    await consumer.start()
    try:
        begin = await consumer.beginning_offsets(tps)
        stores = {tp: table.open(tp.partition) for tp in tps}
        end = await _stable_end(consumer, tps, {tp: store.checkpoint() for tp, store in stores.items()})
        applier = _Applier(table)
        start: dict[TopicPartition, int] = {}
        kept = 0
        for tp in tps:
            store = stores[tp]
            checkpoint = store.checkpoint()
            if checkpoint is not None and not begin[tp] <= checkpoint <= end[tp]:
                log.warning(
                    "table %s partition %d: checkpoint %d outside the changelog (%d..%d); rebuilding",
                    table.name, tp.partition, checkpoint, begin[tp], end[tp],
                )  # fmt: skip
                store, checkpoint = table.reset(tp.partition), None
            if checkpoint is not None:
                kept += len(store)
            applier.stores[tp.partition] = store
            start[tp] = begin[tp] if checkpoint is None else checkpoint
        read = await read_until_end(
            consumer, tps, applier, timeout_s=timeout_s, progress=progress, start=start
        )
        for tp in tps:  # the checkpoint moves to the end even past markers and compacted gaps
            applier.flush(tp.partition, end[tp])
        table.restored_records += applier.count
        if progress is not None:
            progress(0, 0)  # done: also when there was no tail to read
        return read, kept
    finally:
        await consumer.stop()
