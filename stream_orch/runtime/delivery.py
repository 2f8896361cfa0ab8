"""Delivering a processed batch: its records, its state changes and its input offsets.

A node hands each batch to a delivery with ``submit`` and goes on fetching and processing the
next one; ``submit`` first waits for the previous batch (at_least_once: all but its group commit,
which is in order behind the one before), so at most two batches are unfinished and batches land
in order. ``settle`` waits for what is in flight and raises what
failed it; ``abandon`` waits for it and forgets a failure (the node is starting over anyway).

Two guarantees share this interface:

- :class:`AtLeastOnce` (here): outputs acknowledged, then the changelog writes, then the offset
  commit, so a crash between any two replays the batch (its outputs may appear twice).
- :class:`~stream_orch.runtime.transactions.ExactlyOnce`: per input partition one transaction
  holds the outputs, the changelog writes and the offsets, so all of it lands or none does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from stream_orch.runtime.batch import BatchStats
from stream_orch.runtime.output import Acked, Pending, hand_over, merged
from stream_orch.state.tables import Sealed

log = logging.getLogger(__name__)

COMMIT_TIMEOUT_S = 30.0


@dataclass
class BatchOut:
    """Everything one batch leaves behind, by task (input partition number)."""

    records: dict[int, Pending]  # outputs, retries, dead letters
    changes: dict[int, Pending]  # changelog writes
    offsets: dict[TopicPartition, int]  # next offset to read, per consumed partition
    stats: BatchStats = field(default_factory=BatchStats)
    sealed: list[Sealed] = field(default_factory=list)  # the tables' overlays, landed once delivered
    acked: Acked = field(default_factory=dict)  # filled by the delivery: last offsets written


# awaited by a hand-over while it waits for the previous batch, with what it waits for
Meanwhile = Callable[[Awaitable[Any]], Awaitable[None]]


class DeliveryEvents(Protocol):
    """What a delivery reports back to its node (the node passes them on to its observer)."""

    def flushed(self, seconds: float) -> None: ...

    def committed(self, offsets: dict[TopicPartition, int], seconds: float) -> None: ...

    def delivered(self, out: BatchOut) -> None: ...


class Delivery(Protocol):
    busy: bool  # a batch or a commit is in flight

    async def assign(self, tasks: set[int]) -> None:
        """Deliver the batches of exactly these input partitions from now on (called before
        their state is restored; every earlier batch is settled)."""

    async def renew(self) -> None:
        """After a failed batch: replace the clients it may have left unusable."""

    async def submit(self, out: BatchOut, meanwhile: Meanwhile | None = None) -> None:
        """Hand a batch over; ``meanwhile(previous)``, if given, is awaited while the hand-over
        waits for the previous batch (``previous``: what it waits for, done when it may go on;
        the node takes fetched records there). at_least_once sends first and ignores it."""

    def in_flight(self) -> asyncio.Future[None] | None:
        """What the next hand-over will wait for, while it is not done (None: nothing, or the
        hand-over does not wait before sending, as at_least_once's)."""

    async def settle(self, *, commit: bool = True) -> None:
        """Wait for the batch in flight and raise what failed it. ``commit=False`` (a revocation
        is under way) gives up a group commit still pending instead of waiting for it; there is
        none under exactly-once."""

    def drop_commits(self) -> None:
        """Give up waiting for group commits (a revocation is starting); none under exactly-once,
        where offsets are committed inside each batch's transaction."""

    async def abandon(self) -> None: ...

    async def stop(self) -> None: ...


class AtLeastOnce:
    """One idempotent producer for the node; offsets committed by the node's consumer."""

    def __init__(
        self,
        make_producer: Callable[[], AIOKafkaProducer],
        commit: Callable[[dict[TopicPartition, int]], Awaitable[None]],
        events: DeliveryEvents,
        node: str,
    ) -> None:
        self._make_producer = make_producer
        self._commit = commit
        self._events = events
        self._node = node
        self._producer: AIOKafkaProducer | None = None
        self._inflight: asyncio.Task[None] | None = None
        # Offsets are committed in the background, in batch order, so that handing over the next
        # batch does not wait for the group coordinator; settle() waits for them. Each commit
        # waits for the one before it, and cancelling the newest (a revocation) cancels that one.
        self._committing: asyncio.Task[None] | None = None
        self._behind: asyncio.Task[None] | None = None  # the commit the newest one waits for

    @property
    def busy(self) -> bool:
        return self._inflight is not None or self._committing is not None

    async def assign(self, tasks: set[int]) -> None:
        if self._producer is None:  # one producer serves every partition
            await self.renew()

    async def renew(self) -> None:
        """A new producer: an idempotent producer whose broker went away can be left with sequence
        numbers the broker rejects for good (OutOfOrderSequenceNumber on every batch), and a new
        producer gets a new producer id. If it cannot start (the broker is still away) it is
        stopped, the old one stays, and this raises: the node backs off and renews again."""
        producer = self._make_producer()
        try:
            await producer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        old, self._producer = self._producer, producer
        if old is not None:
            with contextlib.suppress(Exception):
                await old.stop()

    async def submit(self, out: BatchOut, meanwhile: Meanwhile | None = None) -> None:
        assert self._producer is not None
        # This batch's outputs leave now, while the previous batch may still be completing.
        acks = await hand_over(self._producer, merged(out.records)) if out.records else None
        waited = time.perf_counter()
        try:
            await self._previous_delivered()
            out.stats.phases.append(("handover_wait", time.perf_counter() - waited))
        except BaseException:
            if acks is not None:
                acks.close()  # never awaited: the node starts over and re-reads the batch
            raise
        self._inflight = asyncio.create_task(self._complete(acks, out))

    def in_flight(self) -> asyncio.Future[None] | None:
        return None  # submit sends a batch's outputs before it waits for the previous batch

    async def _previous_delivered(self) -> None:
        """Wait for the previous batch's delivery, and for the group commit before its own: the
        previous batch's commit stays in flight (a round trip to the group coordinator that every
        batch used to wait for), and at most one commit is ever pending behind the one in
        flight. Raises what failed either (a commit that hung: the node starts over)."""
        task, self._inflight = self._inflight, None
        if task is not None:
            await task  # queues its batch's commit behind the one in flight
        older, self._behind = self._behind, None
        if older is None:
            return
        await asyncio.wait({older})  # not `await`: its cancellation (a revocation) is not ours
        if not older.cancelled():
            older.result()

    async def _complete(self, acks: Coroutine[Any, Any, None] | None, out: BatchOut) -> None:
        """Outputs acknowledged, then state, then offsets: a replayed event is only dropped as a
        duplicate (dedupe) if its outputs were written."""
        assert self._producer is not None
        sent_at = time.perf_counter()
        if acks is not None:
            await acks
        acked_s = time.perf_counter() - sent_at
        self._events.flushed(acked_s)
        out.stats.phases.append(("produce_acks", acked_s))
        if out.changes:
            sent_at = time.perf_counter()
            out.acked.update(await (await hand_over(self._producer, merged(out.changes))))
            out.stats.phases.append(("changelog_acks", time.perf_counter() - sent_at))
        if out.offsets:
            self._behind = self._committing
            self._committing = asyncio.create_task(self._commit_after(self._committing, out.offsets))
        self._events.delivered(out)

    async def _commit_after(
        self, previous: asyncio.Task[None] | None, offsets: dict[TopicPartition, int]
    ) -> None:
        if previous is not None:
            await previous
        started = time.perf_counter()
        try:
            await asyncio.wait_for(self._commit(offsets), COMMIT_TIMEOUT_S)  # a hang restarts the node
        except (CommitFailedError, IllegalStateError) as exc:
            # The group rebalanced under us: the new owner re-reads these records (at-least-once).
            log.warning("commit skipped after rebalance: %s", exc, extra={"node": self._node})
            return
        except KafkaError as exc:
            log.warning("commit failed, the records will be re-read: %s", exc, extra={"node": self._node})
            return
        self._events.committed(offsets, time.perf_counter() - started)

    async def settle(self, *, commit: bool = True) -> None:
        """Wait for the batch in flight and then for its commit; raises what failed either.
        ``commit=False`` (a revocation) cancels the commit instead of waiting for it; so does
        :meth:`drop_commits`. A cancelled commit is no failure: its records are re-read."""
        task, self._inflight = self._inflight, None
        if task is not None:
            await task
        self._behind = None  # waited for below, with the newest
        committing = self._committing
        if committing is None:
            return
        if not commit:
            committing.cancel()
        await asyncio.wait({committing})  # not `await`: its cancellation is not ours
        if self._committing is committing:
            self._committing = None
        if commit and not committing.cancelled():
            committing.result()

    def drop_commits(self) -> None:
        """A revocation is starting: give up the pending group commit. aiokafka's commit waits
        for the group, the group waits for the revocation, and the revocation waits for the node's
        batch, which may be waiting for that commit (a deadlock seen when the broker came back
        after an outage). The partitions' next owner re-reads those records (at-least-once)."""
        if self._committing is not None:
            self._committing.cancel()

    async def abandon(self) -> None:
        with contextlib.suppress(Exception):  # its failure was raised already; the records are re-read
            await self.settle(commit=False)

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.settle()
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()
