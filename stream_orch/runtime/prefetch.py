"""Records taken from the consumer while a batch waits for the previous one's delivery.

aiokafka fetches a partition again only once the records it holds for it were taken: it keeps
one fetch response ahead, not more. Under exactly_once a batch waits for the previous batch's
transactions before its own can begin (``handover_wait``), and a record that reached the broker
during that wait stayed there until the next batch had taken the buffered response, then was
fetched, then waited a whole batch more: two batch cycles between arrival and processing (on a
5k events/s fraud run, ``batch_fill`` p50 about 150 ms against a 70 ms cycle). Taking records
while waiting keeps the fetcher going, so the next batch starts with what arrived up to its
start.

What is taken here was fetched, so the consumer's position is past it: it must either go into
the next batch or be dropped together with a seek back to the committed offsets (a take-over, a
start-over), never dropped alone.

A node with a join reads its input and the join's topic in event-time order
(:mod:`stream_orch.runtime.readorder`): its records pass through the :class:`ReadOrder` on their
way to a batch, and the partitions it holds records of are left out of the fetches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_orch.runtime.readorder import ReadOrder, groups_of

Batches = dict[TopicPartition, list[Any]]


class Prefetch:
    def __init__(self, consumer: AIOKafkaConsumer, limit: int, order: ReadOrder | None = None) -> None:
        self._consumer = consumer
        self._limit = limit  # the node's batch size: the next batch takes no more than that
        self._held: Batches = {}
        self._count = 0
        self._order = order
        if order is not None:
            order.clear()  # a new consumer: nothing it holds was fetched by this one

    def _readable(self) -> tuple[TopicPartition, ...]:
        """The partitions to fetch from: all (``()``), or all but those the read order holds
        records of (their next response stays buffered in aiokafka)."""
        if self._order is None or not (held := self._order.held()):
            return ()
        return tuple(self._consumer.assignment() - held)

    async def gather(self, until: Awaitable[Any]) -> None:
        """Take fetched records until ``until`` is done (it is waited for, not awaited: what it
        raises is the caller's) or a batch's worth is held."""
        done = asyncio.ensure_future(until)
        while not done.done() and self._count < self._limit:
            fetch = asyncio.ensure_future(
                self._consumer.getmany(
                    *self._readable(), timeout_ms=1000, max_records=self._limit - self._count
                )
            )
            try:
                await asyncio.wait({fetch, done}, return_when=asyncio.FIRST_COMPLETED)
            finally:  # also when this task is cancelled: no getmany left running behind it
                if not fetch.done():
                    # getmany only waits before it takes anything: cancelled there, nothing is lost
                    fetch.cancel()
                    await asyncio.wait({fetch})  # not `await`: its cancellation is not ours
            if fetch.cancelled():
                break
            self._add(fetch.result())  # raises what the fetch raised, as the loop's getmany would
        await asyncio.wait({done})

    def _add(self, batches: Batches) -> None:
        for tp, records in batches.items():
            if records:
                self._held.setdefault(tp, []).extend(records)
                self._count += len(records)

    async def fetch(self, timeout_ms: int = 200) -> Batches:
        """The next batch: what was taken while the last one waited, then per partition what is
        fetched now (without waiting when something is held), at most a batch's worth."""
        held = self._count
        fetched: Batches = {}
        if held < self._limit:
            fetched = await self._consumer.getmany(
                *self._readable(), timeout_ms=0 if held else timeout_ms, max_records=self._limit - held
            )
        if held:
            held, self._held, self._count = self._held, {}, 0
            for tp, records in fetched.items():
                have = held.get(tp)
                if have is None:
                    held[tp] = records
                else:
                    have.extend(records)
            fetched = held
        if self._order is None:
            return fetched
        batch = await self._in_order(fetched, self._order)
        # What was fetched may all be held (one getmany takes one partition's buffered response at
        # a time): take what aiokafka has buffered of the other partitions until the batch is full,
        # rather than hand over a small or empty batch (an empty one waits for the delivery).
        room = self._limit - sum(map(len, batch.values()))
        while room > 0 and fetched:
            fetched = await self._consumer.getmany(*self._readable(), max_records=room)
            for tp, records in (await self._in_order(fetched, self._order)).items():
                batch.setdefault(tp, []).extend(records)
                room -= len(records)
        if self._order.handed_over(self._limit - room):
            batch = await self._in_order({}, self._order)  # the idle bound let held records go
        return batch

    async def _in_order(self, fetched: Batches, order: ReadOrder) -> Batches:
        """``fetched`` with the join's partitions' records replaced by those the read order lets
        go now (records of partitions no longer assigned are dropped with the rest: the owner
        reads them again)."""
        groups = groups_of(order, self._consumer.assignment())
        if not groups and not order.held():
            return fetched
        batches = order.add(fetched, groups)
        behind = {tp: await self._behind(tp) for tp in order.waiting(groups)}
        batches.update(order.release(groups, behind.__getitem__))
        return batches

    async def _behind(self, tp: TopicPartition) -> bool:
        """``tp`` has records on the broker beyond the consumer's position (unknown until its
        first fetch response: taken as yes, which the read order's idle bound limits)."""
        consumer = self._consumer
        if tp not in consumer.assignment():
            return False
        end = consumer.last_stable_offset(tp)  # read_committed reads no further; else -1
        if end is None or end < 0:
            end = consumer.highwater(tp)
        if end is None:
            return True
        return await consumer.position(tp) < end  # type: ignore[no-any-return]

    async def position(self, tp: TopicPartition) -> int:
        """Where ``tp``'s processing has got to: the consumer's position, or the first record the
        read order still holds (the position is past it)."""
        position: int = await self._consumer.position(tp)
        first = self._order.first_held(tp) if self._order is not None else None
        return position if first is None else min(position, first)

    def clear(self) -> None:
        """Forget what is held: the partitions are being sought back to their committed offsets."""
        self._held, self._count = {}, 0
        if self._order is not None:
            self._order.clear()
