"""A table fed by a topic that every worker holds in full, kept current by a follower task.

The follower must not die quietly: a table that stops following goes stale while every lookup
still answers, with yesterday's profiles. So an error in its consumer (the broker went away, a
fetch failed) restarts it with a new consumer at the positions already applied, backing off
from ``RESTART_MIN_S`` to ``RESTART_MAX_S``; and the table tells how current it is (records
behind, time of the last record applied, restarts), which the worker exports as metrics and
``/health`` checks against a bound (see :meth:`GlobalTable.fresh_at`).

Rows are applied as :class:`~stream_orch.state.topic_rows.TopicRows` does: checked against
the feeding topic's schema, a bad one skipped and counted (``decode_errors``, ``invalid_rows``),
so the key keeps the row it had; the follower logs the first ones with their key and the
problem. A topology that must not lose such rows cleans the topic first in a node of its own,
whose DLQ keeps them (the fraud topology's ``harmonise_customers``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_orch.state.topic_rows import TopicRows
from stream_orch.transport import clients
from stream_orch.transport.metadata import wait_for_metadata
from stream_orch.transport.reading import read_until_end

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

LOGGED_BAD_ROWS = 5  # per table: then one line per 1000 more


LOAD_TIMEOUT_S = 120.0  # a global table that cannot be read to its end by then stops the worker
RESTART_MIN_S = 0.5
RESTART_MAX_S = 30.0


class GlobalTable(TopicRows):
    """The latest row per record key of ``topic``, on every worker, followed in the background."""

    def __init__(
        self, name: str, topic: str, partitions: int, client_args: dict[str, Any], decode: Any
    ) -> None:
        super().__init__(name, topic, decode)
        self.partitions = partitions
        self._client_args = client_args
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._positions: dict[int, int] = {}  # partition -> next offset to apply
        self.restarts = 0
        self.last_applied_s: float | None = None  # wall clock of the last record applied
        self._fresh_at = time.monotonic()

    # ------------------------------------------------------------------ how current it is

    def fresh_at(self) -> float:
        """Monotonic time at which the table was last known current: a fetch that applied
        records or found nothing left to read. A dead, restarting or stuck follower lets it age."""
        return self._fresh_at

    def lag(self) -> int:
        """Records of the topic not applied yet (as of the follower's last fetch)."""
        consumer = self._consumer
        if consumer is None:
            return 0
        behind = 0
        for p in range(self.partitions):
            end = consumer.last_stable_offset(TopicPartition(self.topic, p))
            if end is not None:
                behind += max(0, end - self._positions.get(p, 0))
        return behind

    # ------------------------------------------------------------------ following the topic

    def _apply(self, record: Any) -> None:
        self._positions[record.partition] = record.offset + 1
        skipped = self.apply(record.key, record.value)
        if skipped is not None:  # the key keeps its previous row
            self._bad_row(record, *skipped)

    def _bad_row(self, record: Any, what: str, exc: Exception) -> None:
        count = self.invalid_rows + self.decode_errors
        where = {"topic": self.topic, "partition": record.partition, "offset": record.offset}
        if count <= LOGGED_BAD_ROWS or count % 1000 == 0:
            # the key and the error's message quote record data: debug only (docs/security.md)
            log.warning(
                "table %s: skipped the row at %s:%d (%d so far): it %s",
                self.name, record.topic, record.offset, count, what, extra=where,
            )  # fmt: skip
        log.debug(
            "table %s: skipped the row of key %r at %s:%d: %s",
            self.name, record.key.decode(errors="replace"), record.topic, record.offset, exc, extra=where,
        )  # fmt: skip

    async def start(self) -> None:
        """Load the topic to its current end, then follow it in the background."""
        consumer = clients.reader(self._client_args)
        await consumer.start()
        self._consumer = consumer
        # a topic created a moment ago (the worker just did) may not be in a fresh broker's
        # metadata yet: its offsets lookup would time out and fail the worker's start
        await wait_for_metadata(consumer, [self.topic])
        read = await read_until_end(
            consumer, self._tps(), self._apply, timeout_s=LOAD_TIMEOUT_S, past_end=True
        )
        if read:
            self.last_applied_s = time.time()
        self._fresh_at = time.monotonic()
        self._task = asyncio.create_task(self._follow(), name=f"global-table:{self.name}")

    def _tps(self) -> list[TopicPartition]:
        return [TopicPartition(self.topic, p) for p in range(self.partitions)]

    async def _follow(self) -> None:
        """Apply what the topic gets; on any error start a new consumer where this one stopped."""
        delay = RESTART_MIN_S
        while True:
            try:
                if self._consumer is None:
                    self._consumer = await self._reopen()
                await self._fetch(self._consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.restarts += 1
                log.error(
                    "global table %s: its follower failed (%r); restarting it in %.1fs",
                    self.name,
                    exc,
                    delay,
                    extra={"topic": self.topic},
                )
                consumer, self._consumer = self._consumer, None
                if consumer is not None:
                    with contextlib.suppress(Exception):
                        await consumer.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESTART_MAX_S)
                continue

    async def _fetch(self, consumer: AIOKafkaConsumer) -> None:
        tps = self._tps()
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for records in batches.values():
                for record in records:
                    self._apply(record)
            if batches:
                self.last_applied_s = time.time()
            # The consumer's position also passes the commit markers an exactly-once writer
            # leaves after its records (no record comes back for them): without it the lag
            # never reaches 0 and a quiet table would be called stale.
            for tp in tps:
                self._positions[tp.partition] = await consumer.position(tp)
            if batches or self.lag() == 0:
                self._fresh_at = time.monotonic()

    async def _reopen(self) -> AIOKafkaConsumer:
        consumer = clients.reader(self._client_args)
        await consumer.start()
        try:
            tps = self._tps()
            consumer.assign(tps)
            fresh = [tp for tp in tps if tp.partition not in self._positions]
            if fresh:
                await consumer.seek_to_beginning(*fresh)
            for tp in tps:
                if tp.partition in self._positions:
                    consumer.seek(tp, self._positions[tp.partition])
        except BaseException:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise
        log.info("global table %s: follower restarted", self.name, extra={"topic": self.topic})
        return consumer

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer:
            await self._consumer.stop()
