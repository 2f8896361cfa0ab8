"""Exactly-once delivery: one transactional producer per input partition of a node.

Per batch and input partition (task) one transaction holds the task's outputs, retries, dead
letters and changelog writes together with its input offsets (``send_offsets_to_transaction``),
so all of it becomes visible to read_committed readers at once, or none of it does.

Fencing without KIP-447 (aiokafka 0.14 sends TxnOffsetCommit without the group generation): the
transactional id is stable per (topology, node, partition), as in Kafka Streams before KIP-447.
Whoever owns a partition next initialises the same id, which bumps its epoch: the previous
owner's open transaction is aborted and every later call of its producer fails with
ProducerFenced. Initialising also waits until the previous owner's last commit has completed, so
the offsets and changelogs read after ``assign`` are stable.

The batch in a sequence::

    begin_transaction                      (per task, all tasks of the batch concurrently)
    send_batch  outputs, retries, DLQ, changelog
    send_offsets_to_transaction  {input, retry tiers of the task: next offset}
    commit_transaction  -> visible to read_committed readers, offsets committed
    (any failure: abort_transaction, the node starts over from the committed offsets)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaProducer

from stream_orch.runtime.delivery import COMMIT_TIMEOUT_S, BatchOut, DeliveryEvents, Meanwhile
from stream_orch.runtime.output import Pending, hand_over

log = logging.getLogger(__name__)

INIT_TIMEOUT_S = 60.0  # init_transactions waits for the previous owner's transaction to end


def transactional_id(topology: str, node: str, partition: int) -> str:
    return f"stream-orch.{topology}.{node}.{partition}"


class ExactlyOnce:
    def __init__(
        self,
        make_producer: Callable[..., AIOKafkaProducer],  # called with transactional_id=
        group: str,
        topology: str,
        node: str,
        events: DeliveryEvents,
    ) -> None:
        self._make_producer = make_producer
        self._group = group
        self._topology = topology
        self._node = node
        self._events = events
        self._producers: dict[int, AIOKafkaProducer] = {}
        self._inflight: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        return self._inflight is not None

    async def assign(self, tasks: set[int]) -> None:
        """Fresh producers for every task, kept ones too: initialising an id waits until its
        last transaction's markers are written, so the committed offsets and changelog ends read
        next are stable (a kept producer's commit may still be completing after a revocation)."""
        await self._close(set(self._producers))
        await self._open(tasks)

    async def _open(self, tasks: set[int]) -> None:
        new = sorted(tasks)  # every producer was closed first
        results = await asyncio.gather(*(self._start(t) for t in new), return_exceptions=True)
        for task, result in zip(new, results, strict=True):
            if isinstance(result, BaseException):
                continue
            self._producers[task] = result
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]

    async def _start(self, task: int) -> AIOKafkaProducer:
        producer = self._make_producer(transactional_id=transactional_id(self._topology, self._node, task))
        try:
            await asyncio.wait_for(producer.start(), INIT_TIMEOUT_S)  # init_transactions fences
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        return producer

    async def _close(self, tasks: set[int]) -> None:
        producers = [self._producers.pop(t) for t in sorted(tasks) if t in self._producers]
        await asyncio.gather(*(_stop(p) for p in producers))

    async def renew(self) -> None:
        """Every task's producer replaced: initialising the ids again aborts whatever a failed
        batch left open, and waits for the commits before it to complete."""
        await self.assign(set(self._producers))

    def in_flight(self) -> asyncio.Future[None] | None:
        task = self._inflight
        return task if task is not None and not task.done() else None

    async def submit(self, out: BatchOut, meanwhile: Meanwhile | None = None) -> None:
        # A task's next transaction cannot begin before its previous one ended; the node takes
        # fetched records meanwhile (runtime/prefetch.py), so the next batch starts with them.
        waited = time.perf_counter()
        if meanwhile is not None and (previous := self.in_flight()) is not None:
            await meanwhile(previous)
        await self.settle()
        out.stats.phases.append(("handover_wait", time.perf_counter() - waited))
        self._inflight = asyncio.create_task(self._commit(out))

    async def _commit(self, out: BatchOut) -> None:
        started = time.perf_counter()
        tasks = {tp.partition for tp in out.offsets} | set(out.records) | set(out.changes)
        results = await asyncio.gather(
            *(self._transaction(t, out) for t in sorted(tasks)), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]
        timings = [r for r in results if r is not None and not isinstance(r, BaseException)]
        if timings:  # the slowest task's: the batch is delivered when its last transaction is
            out.stats.phases.append(("produce_acks", max(t[0] for t in timings)))
            out.stats.phases.append(("txn_commit", max(t[1] for t in timings)))
        seconds = time.perf_counter() - started
        self._events.flushed(seconds)
        if out.offsets:
            self._events.committed(out.offsets, seconds)
        self._events.delivered(out)

    async def _transaction(self, task: int, out: BatchOut) -> tuple[float, float]:
        """One task's transaction; returns (outputs sent to acknowledged, commit call to return)."""
        producer = self._producers.get(task)
        if producer is None:
            raise RuntimeError(f"no transactional producer for partition {task} (not assigned to this node)")
        pending: Pending = dict(out.records.get(task, {}))
        for tp, records in out.changes.get(task, {}).items():
            pending.setdefault(tp, []).extend(records)
        offsets = {tp: offset for tp, offset in out.offsets.items() if tp.partition == task}
        await producer.begin_transaction()
        acks = None
        try:
            sent_at = time.perf_counter()
            acks = await hand_over(producer, pending) if pending else None
            if offsets:
                await asyncio.wait_for(
                    producer.send_offsets_to_transaction(offsets, self._group), COMMIT_TIMEOUT_S
                )
            acked = await acks if acks is not None else {}
            committing = time.perf_counter()
            await asyncio.wait_for(producer.commit_transaction(), COMMIT_TIMEOUT_S)
            out.acked.update(acked)  # only once committed: the tables' checkpoints follow it
            return committing - sent_at, time.perf_counter() - committing
        except BaseException:
            if acks is not None:
                acks.close()  # a no-op once awaited
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.abort_transaction(), 5.0)
            raise

    async def settle(self, *, commit: bool = True) -> None:
        """Wait for the transactions in flight; raises what failed them. ``commit=False`` (a
        revocation) waits all the same: there is no group commit to give up, the offsets are
        part of each transaction, and a transaction in flight ends either way (the partition's
        next owner initialises the same transactional id, which waits for it). The parameter is
        the :class:`~stream_orch.runtime.delivery.Delivery` interface's; the node calls it the
        same way for both guarantees."""
        task, self._inflight = self._inflight, None
        if task is not None:
            await task

    def drop_commits(self) -> None:
        """Nothing to drop: the offsets are committed inside each batch's transaction."""

    async def abandon(self) -> None:
        with contextlib.suppress(Exception):  # raised already; renew() aborts what is left open
            await self.settle()

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.settle()
        await self._close(set(self._producers))


async def _stop(producer: AIOKafkaProducer) -> None:
    with contextlib.suppress(Exception):
        await producer.stop()
