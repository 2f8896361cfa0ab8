"""The executor of one topology node: fetch a batch, run the steps, route, hand it to delivery.

Every stage works on the whole batch. The only awaits per batch are the fetch, one call per
step and the hand-over to the delivery, so the event loop does Python work, not waiting, between
fetches. What a batch leaves behind (outputs, retries, dead letters, changelog writes, offsets)
lands as the topology's guarantee says: see :mod:`stream_orch.runtime.delivery` (at-least-once)
and :mod:`stream_orch.runtime.transactions` (exactly-once).

The parts, each owning one job: :mod:`~stream_orch.runtime.batch` (events and figures),
:class:`~stream_orch.runtime.pipeline.NodePipeline` (decode, steps, then its
:class:`~stream_orch.runtime.routing.Router` and :class:`~stream_orch.runtime.failures.FailureRouter`),
:class:`~stream_orch.runtime.pacing.RetryPacer`, :class:`~stream_orch.runtime.restarts.RestartPolicy`
and the delivery. This module holds the loop, the batch and the partitions' ownership.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_orch.codecs.schemas import SchemaRegistry
from stream_orch.reliability import headers as H
from stream_orch.runtime.access import denial
from stream_orch.runtime.batch import BatchStats
from stream_orch.runtime.delivery import AtLeastOnce, BatchOut, Delivery
from stream_orch.runtime.observer import NullObserver
from stream_orch.runtime.output import Outbox, PartitionMap, Pending
from stream_orch.runtime.pacing import RateLimit, RetryPacer
from stream_orch.runtime.pipeline import NodePipeline
from stream_orch.runtime.prefetch import Prefetch
from stream_orch.runtime.readorder import order_for
from stream_orch.runtime.restarts import RestartPolicy
from stream_orch.runtime.swap import VersionSwap
from stream_orch.runtime.takeover import TakeOver, gather_all
from stream_orch.runtime.ticker import punctuator_for, ticker_for
from stream_orch.runtime.transactions import ExactlyOnce, transactional_id
from stream_orch.sinks import Sink, build_sinks
from stream_orch.state.tables import LocalTable, Sealed
from stream_orch.steps.base import Table
from stream_orch.topology.models import NodeSpec, TopologySpec
from stream_orch.topology.naming import group_id
from stream_orch.transport import clients, fetched
from stream_orch.transport.consumer_view import RebalanceCalls
from stream_orch.transport.first_join import hold_first_join
from stream_orch.transport.metadata import wait_for_metadata

log = logging.getLogger(__name__)

PRUNE_INTERVAL_S = 60.0


class NodeRunner:
    def __init__(
        self,
        *,
        spec: TopologySpec,
        node_name: str,
        schemas: SchemaRegistry,
        client_args: dict[str, Any],
        partitions: PartitionMap,
        tables: dict[str, Table],
        observer: NullObserver | None = None,
        instance_id: str | None = None,
        dlq_tracebacks: bool = False,
        max_rate: float | None = None,
        denied_outputs: frozenset[str] = frozenset(),
        leave_on_stop: bool = True,
        read_lead: tuple[int, float] | None = None,  # (ms, idle s): runtime/readorder.py
    ) -> None:
        self.spec = spec
        self.name = node_name
        self.group = group_id(spec.topology, node_name)
        self.node: NodeSpec = spec.nodes[node_name]
        self.exactly_once = spec.processing == "exactly_once"
        self._client_args = client_args
        self._instance_id = instance_id
        self._leave_on_stop = leave_on_stop  # a clean stop hands the partitions over at once
        self._observer = observer or NullObserver()
        self._started: list[Sink] = []  # the sinks started (stopped in close)
        # decode -> steps -> route -> retries and dead letters: shared with stream_orch.testing
        self._sinks = build_sinks(
            spec,
            node_name,
            partial(self._observer.sink_request, self),
            partial(self._observer.sink_state, self),
            schemas,
        )
        self._pipeline = NodePipeline(
            spec,
            node_name,
            schemas,
            tables,
            dlq_tracebacks=dlq_tracebacks,
            sinks=self._sinks,
            denied=denied_outputs,
        )
        self.local_tables = [t for t in tables.values() if isinstance(t, LocalTable)]
        self._undoing = self._pipeline.undoing
        self._next_prune = time.monotonic() + PRUNE_INTERVAL_S
        self._tier_of = self._pipeline.tier_of
        self._outbox = Outbox(partitions)
        self._state = Outbox(partitions)  # changelog writes, from the tables' sealed overlays
        self._delivery: Delivery = (
            ExactlyOnce(partial(clients.producer, client_args), self.group, spec.topology, node_name, self)
            if self.exactly_once
            else AtLeastOnce(partial(clients.producer, client_args), self._commit, self, node_name)
        )
        self._pacer = RetryPacer(self._pipeline.longest_wait_ms)
        self._rate = RateLimit(max_rate)
        self.read_order = order_for(self.node, read_lead)  # a join's inputs in event-time order
        self._consumer: AIOKafkaConsumer | None = None
        self._prefetch: Prefetch | None = None  # the consumer's: records taken while a batch waits
        self._release_hold: Callable[[], None] = lambda: None  # transport/first_join.py
        self._joining: AIOKafkaConsumer | None = None  # prepared, not subscribed yet
        self._take = TakeOver(
            node_name,
            client_args,
            self._delivery,
            list(self._sinks.values()),
            self.local_tables,
            lambda table: partial(self._observer.restoring, self, table),
        )
        self.pipeline_steps = self._pipeline.steps
        # a scheduled node's: writes tick records while this worker owns the ticks partition
        self.ticker = ticker_for(self, partial(clients.producer, client_args))
        self._punctuate = punctuator_for(self, partial(clients.producer, client_args))
        # Held by a batch from its fetch to its hand-over, and by the rebalance callbacks: a
        # revocation waits for the batch, and no batch runs while state is being restored.
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._failure: Exception | None = None  # raised by the loop: a rebalance callback failed
        self.assigned: set[TopicPartition] = set()
        self._committed_to: dict[TopicPartition, int] = {}  # what this node committed last
        self._to_take_over: set[TopicPartition] | None = None  # assigned, not taken over yet
        self.ready = False  # its first assignment was taken over (/ready waits for it)
        self.recovering = False
        self.last_progress = time.monotonic()
        self.processed = 0
        self.restarts = 0
        self._swap = VersionSwap()  # a reloaded version waiting for the next batch boundary

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Prepare (unless :meth:`prepare` ran already) and join the group."""
        await self.prepare()
        self.join()

    async def prepare(self) -> None:
        """Everything that needs no partitions, before the node joins its group: its targets'
        clients, its changelog reader, and its consumer started and told of its topics. Once it
        has joined, partitions handed to it wait only for the take-over, not for these."""
        if self._joining is not None:
            return
        for sink in self._sinks.values():
            if sink not in self._started:
                await sink.start()
                self._started.append(sink)
        consumer = clients.node_consumer(
            self._client_args, self.group, batch_size=self.node.batch_size, instance_id=self._instance_id
        )
        try:
            await gather_all(consumer.start(), self._take.prepare())
            fetched.install(consumer)  # getmany hands over aiokafka's C records (transport/fetched.py)
            await wait_for_metadata(consumer, self._tier_of)
            if not self.exactly_once:
                await self._delivery.assign(set())  # its producer, before any partition arrives
        except BaseException:
            with contextlib.suppress(Exception):
                await clients.stop_consumer(consumer)
            raise
        self._joining = consumer

    def join(self, members: int = 1) -> None:
        """Subscribe the prepared consumer: it joins the group at its next poll. ``members``: how
        many processes join the group together (a supervised start), whose first generation then
        waits for all of them (transport/first_join.py)."""
        consumer, self._joining = self._joining, None
        assert consumer is not None, "join() before prepare()"
        self._release_hold = hold_first_join(consumer, members)
        consumer.subscribe(list(self._tier_of), listener=RebalanceCalls(self.on_revoked, self.on_assigned))
        self._consumer = consumer
        self._prefetch = Prefetch(consumer, self.node.batch_size, self.read_order)
        self._pacer.attach(consumer)
        for timer in self._timers():
            timer.start()

    def _timers(self) -> list[Any]:
        """The ticker and the punctuator, where the node has them."""
        return [t for t in (self.ticker, self._punctuate[0] if self._punctuate else None) if t is not None]

    def stop(self) -> None:
        """Ask the loop to finish its in-flight batch and leave."""
        self._stopping.set()

    async def close(self) -> None:
        for timer in self._timers():
            await timer.stop()
        # The group is left as soon as the last batch has landed (and, at-least-once, its
        # offsets are committed through the consumer): the partitions' next owners start while
        # this node closes its clients.
        with contextlib.suppress(Exception):
            await self._delivery.settle()
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await clients.stop_consumer(consumer, leave=self._leave_on_stop)
        await self._delivery.stop()
        for sink in self._started:
            try:
                await sink.stop()
            except Exception as exc:  # closing a client must not keep the worker from stopping
                log.warning("target %s did not stop cleanly: %r", sink.name, type(exc).__name__)
        self._started = []
        for table in self.local_tables:
            table.close()  # RocksDB stores stay on disk for the next start
        self._pacer.attach(None)
        with contextlib.suppress(Exception):
            await self._take.close()
        if self._joining is not None:  # prepared, never joined: no group to leave
            joining, self._joining = self._joining, None
            await clients.stop_consumer(joining)

    async def run(self) -> None:
        """Process until stopped; after a failed batch, start over from the committed offsets.

        A batch that failed half-way (the broker went away, a produce timed out) wrote to its
        tables' overlays, which never reached the stores, so the node drops them and starts
        over: new producers, the stores brought up to date with their changelogs and the
        records from the last committed offsets. It keeps its consumer (and so its place in the group:
        no rebalance for the other members, no wait for a new member to be let in) unless
        starting over that way keeps failing for ``REJOIN_AFTER_S``; then it re-joins the group
        with a new consumer.
        """
        policy = RestartPolicy()
        recover = False  # a batch failed: renew the producers and rewind before the next batch
        while not self._stopping.is_set():
            started, processed = time.monotonic(), self.processed
            try:
                if recover:
                    await self._delivery.renew()  # before anything is sent: the old may be unusable
                    if self._consumer is not None:
                        await self._rewind()
                    recover = False
                if self._consumer is None:
                    await self.start()
                await self._loop()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay, rejoin = policy.failed(
                    progressed=self.processed > processed, ran_s=time.monotonic() - started
                )
                txn_prefix = (
                    transactional_id(self.spec.topology, self.name, 0)[:-1] if self.exactly_once else None
                )
                log.error(
                    "node failed, %s in %.0fs: %s",
                    "re-joining its group" if rejoin else "starting over",
                    delay,
                    denial(exc, group=self.group, txn_prefix=txn_prefix) or repr(exc),
                    extra={"node": self.name, "topic": self.node.input},
                )
                self.restarts += 1
                self._observer.restarted(self, exc)
                await self._abandon(rejoin)
                recover = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
            else:
                policy.recovered()

    async def _abandon(self, rejoin: bool) -> None:
        """Give up the failed batch; with ``rejoin`` also the consumer and all state."""
        await self._delivery.abandon()
        self._outbox.discard()
        self._state.discard()
        for table in self.local_tables:
            table.drop_pending()  # the stores never saw the failed batches' writes
        self._failure = None  # that batch is abandoned all the same
        for step in self._undoing:
            step.release([])  # forget the abandoned batch's marks (its overlays are dropped)
        if not rejoin:
            return
        consumer, self._consumer = self._consumer, None
        self._pacer.attach(None)
        self.assigned = set()
        self._to_take_over = None
        for table in self.local_tables:
            table.forget(table.partitions())
        if consumer is not None:
            try:
                await clients.stop_consumer(consumer)
            except Exception as exc:  # the broker may be gone; the group times us out
                log.warning("consumer stop failed: %r", exc, extra={"node": self.name})

    async def _rewind(self) -> None:
        """Start over inside the group: every assigned partition back to its committed offset
        and every table's stores brought up to date with its changelog (the tail after each
        checkpoint), as on a fresh assignment. Raises while the
        broker cannot tell the committed offsets (the caller backs off and tries again)."""
        consumer = self._consumer
        assert consumer is not None
        async with self._lock:
            self._pacer.clear()
            self._to_take_over = None  # taken over here, with everything else assigned
            assigned = set(consumer.assignment())
            await self._take_over(assigned)
        log.info(
            "started over at the committed offsets of %d partitions, same group member",
            len(assigned),
            extra={"node": self.name, "topic": self.node.input},
        )

    async def _loop(self) -> None:
        assert self._prefetch is not None
        prefetch = self._prefetch
        full = True  # the last batch was as large as a batch may be (traffic is heavy)
        while not self._stopping.is_set():
            self._raise_failure()
            if self._to_take_over is not None:
                async with self._lock:
                    assigned, self._to_take_over = self._to_take_over, None
                    await self._take_over(assigned)
                    self._pacer.clear()  # resumes them (a retry not due yet is paused again)
            self.spec = self._swap.apply(self._pipeline) or self.spec
            if not full and (previous := self._delivery.in_flight()) is not None:
                # Light traffic: the batch starts once the previous one's transactions ended, with
                # what arrived until then; under load its steps overlap them (runtime/prefetch.py)
                await prefetch.gather(previous)
            fetch_started = time.perf_counter()
            batches = await prefetch.fetch()
            fetch_s = time.perf_counter() - fetch_started
            full = sum(map(len, batches.values())) >= self.node.batch_size
            if not batches:
                self.last_progress = time.monotonic()
                if self._delivery.busy:
                    await self._delivery.settle()  # idle: surface a failed delivery now
                await self._commit_idle()
                continue
            async with self._lock:
                # a rebalance callback that ran while we fetched may have failed: nothing may be
                # committed past that failure
                self._raise_failure()
                # Records of partitions not (or not yet) ours: fetched before a revocation, or
                # while on_assigned restores state. Not processed, not committed; the owner
                # (or we, from the committed offset after the assignment) reads them again.
                if any(tp not in self.assigned for tp in batches):
                    batches = {tp: r for tp, r in batches.items() if tp in self.assigned}
                    if not batches:
                        continue
                await self._process(batches, fetch_s)
            if (wait := self._rate.delay(sum(map(len, batches.values())), time.monotonic())) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), wait)

    @property
    def consumer(self) -> AIOKafkaConsumer | None:
        """Its consumer while it is in its group, for what others read of it (runtime/sigusr1.py)."""
        return self._consumer

    @property
    def busy(self) -> bool:
        """A batch or a commit is in flight."""
        return self._delivery.busy

    def reload(self, spec: TopologySpec) -> asyncio.Future[None]:
        """Run ``spec`` from the next batch on; the batch in flight ends on the running version."""
        return self._swap.request(spec)

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    # ------------------------------------------------------------------ one batch

    async def _process(self, batches: dict[TopicPartition, list[Any]], fetch_s: float) -> None:
        started = time.perf_counter()
        now = H.now_ms()
        stats = BatchStats()
        tier_of = self._tier_of
        oldest = min(
            (r[0].timestamp for tp, r in batches.items() if r and not tier_of[tp.topic]), default=None
        )  # retries carry their origin's timestamp: no measure of this batch's wait
        stats.phases.append(("fetch_wait", fetch_s))
        if oldest is not None:
            stats.phases.append(("batch_fill", max(0, now - oldest) / 1000))
        self._maybe_prune()
        self._pacer.due(batches, self._tier_of, now)  # retries not due yet wait, paused
        if self._punctuate is not None:
            self._punctuate[1].heard(batches)
        offsets = await self._pipeline.process(batches, self._outbox, stats, now)
        stats.processing_s = time.perf_counter() - started
        stats.phases.append(("steps", stats.processing_s))
        sealed = [table.seal() for table in self.local_tables]
        changes = self._changelog_records(sealed)
        out = BatchOut(self._outbox.take(), changes, offsets, stats, sealed)
        await self._delivery.submit(out, self._prefetch.gather if self._prefetch is not None else None)

    async def _commit_idle(self) -> None:
        """Idle: commit the positions that moved past what was committed without a record, i.e.
        over transaction markers or aborted records (read_committed skips both). A committed
        offset left at a marker would read as one record of lag that never goes away. The
        position only moves past returned records (all processed, not ours and re-read from the
        committed offset, or held by the read order: the prefetch's position stops at the first)
        and past what read_committed skips, so nothing unprocessed is committed past."""
        prefetch = self._prefetch
        assert prefetch is not None
        async with self._lock:
            offsets = {}
            for tp in self.assigned:
                position = await prefetch.position(tp)
                if position > self._committed_to.get(tp, 0):
                    offsets[tp] = position
            if offsets:
                await self._delivery.submit(BatchOut({}, {}, offsets))

    def _changelog_records(self, sealed: list[Sealed]) -> dict[int, Pending]:
        extend = self._state.extend
        for batch in sealed:
            changelog = batch.table.changelog
            for partition, records in batch.changelog().items():
                extend(partition, changelog, partition, records)
        return self._state.take()

    def _maybe_prune(self) -> None:
        """Every ``PRUNE_INTERVAL_S``: expire old state of the partitions it owns, with this batch."""
        if not self._pipeline.expiring or time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + PRUNE_INTERVAL_S
        self._pipeline.prune({tp.partition for tp in self.assigned if tp.topic == self.node.input})

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        """At-least-once: commit the offsets of the partitions still ours."""
        owned = {tp: off for tp, off in offsets.items() if tp in self.assigned}
        if owned and self._consumer is not None:
            await self._consumer.commit(owned)

    # ------------------------------------------------------------------ delivery events

    def flushed(self, seconds: float) -> None:
        self._observer.flushed(self, seconds)

    def committed(self, offsets: dict[TopicPartition, int], seconds: float) -> None:
        self._committed_to.update(offsets)
        self._observer.committed(self, offsets, seconds)

    def delivered(self, out: BatchOut) -> None:
        for sealed in out.sealed:
            sealed.land(out.acked)
        self.last_progress = time.monotonic()
        if out.stats.n_in:  # not an idle commit
            self.processed += out.stats.n_in
            self._observer.batch_done(self, out.stats)

    # ------------------------------------------------------------------ partitions

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        self._delivery.drop_commits()  # before the lock: a batch may hold it waiting for a commit
        async with self._lock:  # let the batch being processed be handed over first
            try:
                await self._delivery.settle(commit=False)
            except Exception as exc:  # raised in the loop, which starts the node over
                self._failure = exc
            self.assigned -= revoked  # records of these fetched earlier must not be processed now
            self._pacer.forget(revoked)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Only note the assignment: the loop takes the partitions over (fences, seeks, restores)
        before its next fetch. Inside this callback a long restore would hold up the group, and
        aiokafka logs and drops what it raises; in the loop a failure starts the node over. The
        partitions stay paused until then, so nothing of them is fetched for a batch."""
        self._release_hold()  # the group's first generation is done (transport/first_join.py)
        async with self._lock:
            if self._consumer is not None and assigned:
                self._consumer.pause(*assigned)
            self._to_take_over = set(assigned)
            self.recovering = True
            self._observer.recovering(self, True)
        self._observer.rebalanced(self, len(assigned))

    async def _take_over(self, assigned: set[TopicPartition]) -> None:
        """Own ``assigned`` (:mod:`stream_orch.runtime.takeover`): fenced, at the committed
        offsets, every table restored; the loop then fetches them."""
        self.recovering = True
        self._observer.recovering(self, True)
        try:
            if self._prefetch is not None:
                self._prefetch.clear()  # every assigned partition is sought to its committed offset
            await self._take(self._consumer, assigned)
            self.assigned = set(assigned)
            self.ready = True
        finally:
            self.recovering = False
            self._observer.recovering(self, False)
