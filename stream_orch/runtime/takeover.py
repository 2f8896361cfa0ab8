"""Taking partitions over: what a node does between being assigned partitions and fetching them.

Under exactly-once the delivery first fences the partitions' previous owner (initialising their
transactional ids waits for its last transaction to end), so the committed offsets and the
changelog ends read next are stable. Then, side by side, the node's consumer seeks every
partition to its committed offset and one reader restores every table's partitions
(:class:`~stream_orch.state.restore.Restorer`). The restore's reader is started before the
node joins its group and kept between take-overs: a restarted worker's partitions, or the
others' during the rebalance its joining causes, wait only for this, not for client start-ups.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_orch.runtime.delivery import COMMIT_TIMEOUT_S, Delivery
from stream_orch.sinks import Sink
from stream_orch.state.restore import Progress, Restored, Restorer
from stream_orch.state.tables import LocalTable
from stream_orch.transport.consumer_view import seek_committed

log = logging.getLogger(__name__)


async def gather_all(*aws: Awaitable[Any]) -> list[Any]:
    """Await all of ``aws`` side by side and return their results; every one has ended before
    the first failure is raised (none is left running, e.g. writing a store, while the caller
    starts over)."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


class TakeOver:
    def __init__(
        self,
        node: str,
        client_args: dict[str, Any],
        delivery: Delivery,
        sinks: Sequence[Sink],
        tables: Sequence[LocalTable],
        progress: Callable[[str], Progress],
    ) -> None:
        self._node = node
        self._delivery = delivery
        self._sinks = sinks
        self._tables = list(tables)
        self._progress = progress
        self._restorer = Restorer(client_args, [t.changelog for t in self._tables])

    async def prepare(self) -> None:
        """The restore's reader, started and told of the changelogs (no partitions needed)."""
        if self._tables:
            await self._restorer.start()

    async def close(self) -> None:
        await self._restorer.stop()

    async def __call__(self, consumer: AIOKafkaConsumer | None, assigned: set[TopicPartition]) -> None:
        """Own ``assigned``: fenced and ready to deliver, each at its committed offset, every
        table's partitions restored (raises what failed; the node then starts over)."""
        began = time.perf_counter()
        partitions = {tp.partition for tp in assigned}
        await self._delivery.assign(partitions)
        fenced = time.perf_counter()
        owned = {(tp.topic, tp.partition) for tp in assigned}
        for sink in self._sinks:
            await sink.on_assign(owned)
        for table in self._tables:
            table.forget(table.partitions() - partitions)
        seeking = (
            seek_committed(consumer, sorted(assigned), COMMIT_TIMEOUT_S)
            if consumer is not None
            else asyncio.sleep(0)
        )
        _, restored = await gather_all(
            seeking, self._restorer.restore(self._tables, sorted(partitions), progress=self._progress)
        )
        self._report(restored, sorted(partitions), len(assigned), began, fenced)

    def _report(self, restored: Restored, partitions: list[int], n: int, began: float, fenced: float) -> None:
        extra = {"node": self._node}
        for table in self._tables:
            log.info(
                "table %s partitions %s: %d records read from the changelog, %d kept in local state",
                table.name,
                partitions,
                restored.read.get(table.name, 0),
                restored.kept.get(table.name, 0),
                extra=extra,
            )
        log.info(
            "took over %d partitions in %.3f s (fencing %.3f s, then offsets and restore %.3f s, the "
            "restore %.3f s)",
            n,
            time.perf_counter() - began,
            fenced - began,
            time.perf_counter() - fenced,
            restored.seconds,
            extra=extra,
        )
