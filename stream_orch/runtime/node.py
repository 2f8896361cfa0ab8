"""The executor of one topology node: fetch a batch, run the steps, route, produce, commit.

Every stage works on the whole batch. The only awaits per batch are the fetch, one call per
step, the flush of all outputs (one record batch per partition) and the commit, so the event
loop does Python work, not waiting, between fetches. Offsets are committed only after every
output, retry, dead letter and changelog change of the batch was acknowledged (at-least-once).

Retry tiers are topics read by the same consumer. A record whose due time has not come pauses
its partition (seek back, resume by a timer), so neither the main partitions nor other retry
partitions wait and nothing busy-waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from stream_orch.codecs import DecodeError, codec_for, projection
from stream_orch.codecs.schemas import SchemaRegistry
from stream_orch.expressions import compile_expression
from stream_orch.reliability import headers as H
from stream_orch.runtime.output import BatchSender
from stream_orch.spec.models import NodeSpec, TopologySpec
from stream_orch.spec.naming import dlq_topic, group_id, retry_topic
from stream_orch.state.tables import LocalTable
from stream_orch.steps.base import Event, Step, Table
from stream_orch.steps.registry import build_step
from stream_orch.transport.metadata import wait_for_metadata
from stream_orch.transport.reading import read_to_end

log = logging.getLogger(__name__)

PRUNE_INTERVAL_S = 60.0
DLQ_LOG_LINES_PER_BATCH = 5
FETCH_MAX_WAIT_MS = 25
COMMIT_TIMEOUT_S = 30.0
# Restarts back off 1, 2, 4, 5, 5 ... s: while the broker is away a restart is a refused connection
# (cheap), and once it is back the node should not sleep long before it notices.
MAX_RESTART_BACKOFF_S = 5.0
RESTART_RESET_AFTER_S = 60.0  # a node that ran this long before failing starts its backoff afresh
REJOIN_AFTER_S = 30.0  # starting over inside the group failed this long: re-join with a new consumer


@dataclass
class Failure:
    event: Event
    reason: str
    error: BaseException | None
    retriable: bool


@dataclass
class BatchStats:
    """What one batch did, handed to metrics once per batch."""

    n_in: int = 0
    outputs: Counter[tuple[str, str]] = field(default_factory=Counter)  # (route, topic) -> n
    dropped: Counter[str] = field(default_factory=Counter)
    dead_lettered: Counter[str] = field(default_factory=Counter)
    retried: Counter[int] = field(default_factory=Counter)  # tier -> n
    errors: Counter[str] = field(default_factory=Counter)  # error class -> n
    oldest_timestamp_ms: int | None = None
    timestamps_ms: list[int] = field(default_factory=list)


class NodeContext:
    """The StepContext the executor hands to steps for one batch."""

    def __init__(self, topology: str, node: str, constants: dict[str, Any], tables: dict[str, Table]) -> None:
        self.topology = topology
        self.node = node
        self.constants = constants
        self._tables = tables
        self.failures: list[Failure] = []
        self.dropped: Counter[str] = Counter()

    def table(self, name: str) -> Table:
        return self._tables[name]

    def reject(self, event: Event, reason: str, error: BaseException | None = None) -> None:
        self.failures.append(Failure(event, reason, error, retriable=False))

    def retry(self, event: Event, reason: str, error: BaseException | None = None) -> None:
        self.failures.append(Failure(event, reason, error, retriable=True))

    def drop(self, event: Event, why: str) -> None:
        self.dropped[why] += 1

    def reset(self) -> None:
        self.failures = []
        self.dropped = Counter()


@dataclass
class _Target:
    """One output of a route, with everything it needs compiled once."""

    topic: str
    route: str
    key_field: str | None
    setters: list[tuple[str, Callable[[dict[str, Any]], Any]]]
    project: Callable[[dict[str, Any]], dict[str, Any]]
    encode: Callable[[dict[str, Any]], bytes]
    shape: tuple[str | None, str] | None = None  # (schema, format) when no `set`: same bytes
    sent: int = 0  # outputs in the current batch, folded into the batch stats

    def render(self, value: dict[str, Any], key: bytes | None) -> tuple[bytes | None, bytes]:
        out = self.project(value)
        for name, fn in self.setters:
            out[name] = fn(value)
        return self.key_of(out, key), self.encode(out)

    def key_of(self, value: dict[str, Any], key: bytes | None) -> bytes | None:
        if self.key_field is None:
            return key
        k = value.get(self.key_field)
        return None if k is None else str(k).encode()


class NodeRunner:
    def __init__(
        self,
        *,
        spec: TopologySpec,
        node_name: str,
        schemas: SchemaRegistry,
        client_args: dict[str, Any],
        sender: BatchSender,
        tables: dict[str, Table],
        observer: Any = None,
    ) -> None:
        self.spec = spec
        self.name = node_name
        self.group = group_id(spec.topology, node_name)
        self.node: NodeSpec = spec.nodes[node_name]
        self._client_args = client_args
        self._sender = sender
        self._tables = tables
        self._observer = observer
        input_topic = spec.topics[self.node.input]
        self._decode = codec_for(input_topic, schemas).decode
        self._steps: list[Step] = [
            build_step(s, topology_spec=spec, schemas=schemas, node_name=node_name) for s in self.node.steps
        ]
        self.local_tables = [t for t in tables.values() if isinstance(t, LocalTable)]
        self._prunable = [s for s in self._steps if hasattr(s, "prune") and hasattr(s, "table_name")]
        self._releasing = [s for s in self._steps if hasattr(s, "release")]  # dedupe: see release()
        self._next_prune = time.monotonic() + PRUNE_INTERVAL_S
        self._ctx = NodeContext(spec.topology, node_name, dict(spec.constants), tables)
        policy = self.node.errors
        self._delays = list(policy.retry.delays) if policy and policy.retry else []
        self._retry_on = set(policy.retry.on) if policy and policy.retry else set()
        self._dlq = dlq_topic(self.node)
        self._tier_of: dict[str, int] = {self.node.input: 0}
        for n in range(1, len(self._delays) + 1):
            self._tier_of[retry_topic(self.node.input, n)] = n
        always, when, otherwise = self._compile_routes(schemas)
        # Routes with `when` are exclusive (the first match wins); routes without it always fire.
        self._choices = [(condition, always + targets) for condition, targets in when]
        self._default = always + otherwise
        self._targets = always + otherwise + [t for _, targets in when for t in targets]
        self._topic_headers: dict[str, tuple[str, bytes]] = {}
        self._partition_headers: dict[int, tuple[str, bytes]] = {}
        self._static_headers = [
            (H.TOPOLOGY, spec.topology.encode()),
            (H.VERSION, spec.version.encode()),
            (H.NODE, node_name.encode()),
        ]
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._resume_handles: dict[TopicPartition, asyncio.TimerHandle] = {}
        self.assigned: set[TopicPartition] = set()
        self.recovering = False
        self.last_progress = time.monotonic()
        self.processed = 0
        self.restarts = 0
        self._inflight: asyncio.Task[None] | None = None  # the batch being completed
        self._failure: Exception | None = None
        self._commit_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ building

    def _compile_routes(
        self, schemas: SchemaRegistry
    ) -> tuple[list[_Target], list[tuple[Callable, list[_Target]]], list[_Target]]:
        constants = self.spec.constants
        always: list[_Target] = []
        when: list[tuple[Callable, list[_Target]]] = []
        otherwise: list[_Target] = []
        for index, route in enumerate(self.node.routes):
            label = route.when or ("otherwise" if route.otherwise else "always")
            targets = []
            for target in route.targets():
                topic_spec = self.spec.topics[target.topic]
                schema_name = topic_spec.schema_
                targets.append(
                    _Target(
                        topic=target.topic,
                        route=f"{index}:{label}",
                        key_field=target.key or topic_spec.key,
                        setters=[
                            (name, compile_expression(src, constants=constants).fn)
                            for name, src in target.set.items()
                        ],
                        project=projection(
                            [f["name"] for f in schemas.fields(schema_name) if f["name"] not in target.set]
                        )
                        if schema_name
                        else dict,
                        encode=codec_for(topic_spec, schemas).encode,
                        shape=None if target.set else (schema_name, topic_spec.format),
                    )
                )
            if route.when is not None:
                when.append((compile_expression(route.when, constants=constants).fn, targets))
            elif route.otherwise:
                otherwise.extend(targets)
            else:
                always.extend(targets)
        return always, when, otherwise

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            **self._client_args,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.node.batch_size,
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=2 * 1024 * 1024,
            # A fetch request names only the partitions with nothing buffered; if those are idle
            # (retry tiers usually are) the broker holds it up to fetch_max_wait_ms, and records
            # arriving meanwhile on the other partitions wait for it. Kafka's 500 ms default put
            # hundreds of ms into p99 latency; 25 ms costs a few idle fetches per second.
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            partition_assignment_strategy=(_range_assignor(),),
        )
        await consumer.start()
        try:
            await wait_for_metadata(consumer, self._tier_of)
        except BaseException:
            await _stop_consumer(consumer)
            raise
        consumer.subscribe(list(self._tier_of), listener=_Rebalance(self))
        self._consumer = consumer

    def stop(self) -> None:
        """Ask the loop to finish its in-flight batch and leave."""
        self._stopping.set()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.settle()
        for handle in self._resume_handles.values():
            handle.cancel()
        if self._consumer is not None:
            await _stop_consumer(self._consumer)
        await self._sender.close()

    def describe(self) -> dict[str, Any]:
        """The consumer's view of its group and partitions, for the SIGUSR1 dump. Reads aiokafka
        internals (there is no public, synchronous way to get positions); best effort."""
        consumer = self._consumer
        if consumer is None:
            return {"node": self.name, "consumer": None, "restarts": self.restarts}
        coordinator = getattr(consumer, "_coordinator", None)
        parts = {}
        for tp in sorted(consumer.assignment()):
            with contextlib.suppress(Exception):
                parts[f"{tp.topic}[{tp.partition}]"] = (
                    consumer._subscription.subscription.assignment.state_value(tp).position
                    if consumer._subscription.subscription
                    else None,
                    consumer.highwater(tp),
                )
        return {
            "node": self.name,
            "restarts": self.restarts,
            "assigned": sorted(f"{tp.topic}[{tp.partition}]" for tp in self.assigned),
            "paused": sorted(f"{tp.topic}[{tp.partition}]" for tp in consumer.paused()),
            "coordinator_id": getattr(coordinator, "coordinator_id", None),
            "generation": getattr(coordinator, "generation", None),
            "member_id": getattr(coordinator, "member_id", None),
            "position_highwater": parts,
            "inflight": self._inflight is not None,
            "commit_pending": self._commit_task is not None,
        }

    async def run(self) -> None:
        """Process until stopped; after a failed batch, start over from the committed offsets.

        A batch that failed half-way (the broker went away, a produce timed out) has changed
        in-memory state whose changelog may not have been written, so the node drops all its
        state and starts over: a new producer, the state from the changelogs and the records
        from the last committed offsets. It keeps its consumer (and so its place in the group:
        no rebalance for the other members, no wait for a new member to be let in) unless
        starting over that way keeps failing for ``REJOIN_AFTER_S``; then it re-joins the group
        with a new consumer.
        """
        backoff = 1.0
        recover = False  # a batch failed: renew the producer and rewind before the next batch
        failing_since: float | None = None
        while not self._stopping.is_set():
            started, processed = time.monotonic(), self.processed
            try:
                if recover:
                    await self._sender.renew()  # before anything is sent: the old one may be unusable
                    if self._consumer is not None:
                        await self._rewind()
                    recover = False
                if self._consumer is None:
                    await self.start()
                await self._loop()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                now = time.monotonic()
                if self.processed > processed or now - started > RESTART_RESET_AFTER_S:
                    backoff, failing_since = 1.0, None  # it worked since its last start: a new incident
                failing_since = failing_since or now
                rejoin = now - failing_since > REJOIN_AFTER_S
                log.error(
                    "node failed, %s in %.0fs: %r",
                    "re-joining its group" if rejoin else "starting over",
                    backoff,
                    exc,
                    extra={"node": self.name, "topic": self.node.input},
                )
                self.restarts += 1
                if self._observer is not None:
                    self._observer.restarted(self)
                await self._reset(rejoin)
                recover = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                backoff = min(backoff * 2, MAX_RESTART_BACKOFF_S)
            else:
                backoff = 1.0

    async def _reset(self, rejoin: bool) -> None:
        """Abandon the failed batch; with ``rejoin`` also the consumer and all state."""
        with contextlib.suppress(Exception):  # its failure is logged; the records are re-read
            await self.settle()
        self._sender.discard()
        self._failure = None  # that batch is abandoned all the same
        for step in self._releasing:
            step.release([])  # forget the abandoned batch's dedupe marks (its tables are rebuilt)
        if not rejoin:
            return
        consumer, self._consumer = self._consumer, None
        self.assigned = set()
        for table in self.local_tables:
            table.forget(table.partitions())
        if consumer is not None:
            try:
                await _stop_consumer(consumer)
            except Exception as exc:  # the broker may be gone; the group times us out
                log.warning("consumer stop failed: %r", exc, extra={"node": self.name})

    async def _rewind(self) -> None:
        """Start over inside the group: every assigned partition back to its committed offset
        and every table rebuilt from its changelog, as on a fresh assignment. Raises while the
        broker cannot tell the committed offsets (the caller backs off and tries again)."""
        consumer = self._consumer
        assert consumer is not None
        async with self._lock:
            assigned = sorted(consumer.assignment())
            committed = dict(
                zip(
                    assigned,
                    await asyncio.wait_for(
                        asyncio.gather(*(consumer.committed(tp) for tp in assigned)), COMMIT_TIMEOUT_S
                    ),
                    strict=True,
                )
            )
            for handle in self._resume_handles.values():
                handle.cancel()
            self._resume_handles.clear()
            if paused := consumer.paused() & set(assigned):
                consumer.resume(*paused)  # a due retry is paused again when it is fetched
            beginning = []
            for tp, offset in committed.items():
                if offset is None or offset < 0:
                    beginning.append(tp)  # never committed: auto_offset_reset=earliest
                else:
                    consumer.seek(tp, offset)
            if beginning:
                await consumer.seek_to_beginning(*beginning)
            for table in self.local_tables:
                table.forget(table.partitions())
            await self._on_assigned(set(assigned))
        log.info(
            "started over at the committed offsets of %d partitions, same group member",
            len(assigned),
            extra={"node": self.name, "topic": self.node.input},
        )

    async def _loop(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while not self._stopping.is_set():
            if self._failure is not None:  # a batch completed during a rebalance failed
                failure, self._failure = self._failure, None
                raise failure
            batches = await consumer.getmany(timeout_ms=200, max_records=self.node.batch_size)
            if not batches:
                self.last_progress = time.monotonic()
                if self._inflight is not None and self._inflight.done():
                    await self.settle()  # idle: surface a failed completion now, not at the next batch
                continue
            async with self._lock:
                # Records of partitions not (or not yet) ours: fetched before a revocation, or
                # while on_assigned restores state. Not processed, not committed; the owner
                # (or we, from the committed offset after the assignment) reads them again.
                if any(tp not in self.assigned for tp in batches):
                    batches = {tp: r for tp, r in batches.items() if tp in self.assigned}
                    if not batches:
                        continue
                await self._process(batches)

    # ------------------------------------------------------------------ one batch

    async def _process(self, batches: dict[TopicPartition, list[Any]]) -> None:
        started = time.perf_counter()
        if self._prunable and time.monotonic() >= self._next_prune:
            self._prune()
        now = H.now_ms()
        stats = BatchStats()
        events: list[Event] = []
        commits: dict[TopicPartition, int] = {}
        ctx = self._ctx
        ctx.reset()
        decode = self._decode
        n_in = 0
        reject = ctx.reject
        append = events.append
        for tp, records in batches.items():
            tier = self._tier_of[tp.topic]
            if tier:
                records = self._due(tp, records, now)
                if not records:
                    continue
            topic, partition = tp.topic, tp.partition
            commits[tp] = records[-1].offset + 1
            n_in += len(records)
            # e2e latency is a distribution: a few dozen samples per partition and batch suffice
            stats.timestamps_ms.extend(r.timestamp for r in records[:: max(1, len(records) // 32)])
            for record in records:
                raw = record.value
                offset = record.offset
                event = Event(
                    {}, record.key, raw, record.headers, topic, partition, offset, record.timestamp,
                    tier, topic, partition, offset,
                )  # fmt: skip
                if tier:
                    _restore_origin(event)
                if raw is None:
                    reject(event, "null_value", DecodeError("null_value", "the record has no value"))
                    continue
                try:
                    event.value = decode(raw)
                except DecodeError as exc:
                    reject(event, exc.reason, exc)
                    continue
                except Exception as exc:
                    reject(event, "decode_error", exc)
                    continue
                append(event)
        stats.n_in = n_in

        events = await self._run_steps(events, 0)
        self._route(events, stats, now)
        self._handle_failures(stats, now)
        if self._releasing:  # before the changelog is drained: a failed event keeps no dedupe mark
            failed = [f.event for f in self._ctx.failures]
            for step in self._releasing:
                step.release(failed)
        stats.dropped.update(ctx.dropped)
        # This batch's outputs, retries and dead letters go out now; while the broker acknowledges
        # them, the loop fetches and processes the next batch. Completing a batch (changelog
        # writes, then the offset commit) waits for the previous batch's completion, so at most
        # two batches are unacknowledged and state and offsets are written in batch order.
        processing_s = time.perf_counter() - started  # steps and routing: the node's own work
        acks = await self._sender.send()
        changes = [
            (table.changelog, partition, key, value)
            for table in self.local_tables
            for partition, key, value in table.drain_changes()
        ]
        await self.settle()
        self._inflight = asyncio.create_task(self._complete(acks, changes, commits, stats, processing_s))

    async def _complete(
        self,
        acks: Any,
        changes: list[tuple[str, int, bytes, bytes | None]],
        commits: dict[TopicPartition, int],
        stats: BatchStats,
        processing_s: float,
    ) -> None:
        """Outputs acknowledged, then state, then offsets: a crash between any two replays the
        batch, and a replayed event is only dropped as a duplicate if its outputs were written."""
        sent_at = time.perf_counter()
        if acks is not None:
            await acks
        if self._observer is not None:
            self._observer.flushed(self, time.perf_counter() - sent_at)
        state_acks = await self._sender.send_records(changes)
        if state_acks is not None:
            await state_acks
        if commits:  # committed in the background, in batch order: nothing waits for it
            self._commit_task = asyncio.create_task(self._commit_after(self._commit_task, commits))
        self.processed += stats.n_in
        self.last_progress = time.monotonic()
        if self._observer is not None:
            self._observer.batch_done(self, stats, processing_s)

    async def settle(self) -> None:
        """Wait until the batch in flight is acknowledged, its state written and its offsets
        committed; raises what failed it (the loop then starts the node over)."""
        task, self._inflight = self._inflight, None
        if task is not None:
            await task
        commit, self._commit_task = self._commit_task, None
        if commit is not None:
            await commit

    async def _commit_after(
        self, previous: asyncio.Task[None] | None, commits: dict[TopicPartition, int]
    ) -> None:
        if previous is not None:
            await previous
        await self._commit(commits)

    def _prune(self) -> None:
        """Expire state that event time has left behind (old txn_ids, empty windows); the
        deletions go to the changelogs as tombstones with this batch."""
        self._next_prune = time.monotonic() + PRUNE_INTERVAL_S
        partitions = {tp.partition for tp in self.assigned if tp.topic == self.node.input}
        for step in self._prunable:
            table = self._tables[step.table_name]
            for partition in partitions:
                step.prune(table, partition)

    async def _run_steps(self, events: list[Event], start: int) -> list[Event]:
        """Run the steps from ``start``; if a step raises, isolate the failing events one by one."""
        steps = self._steps
        for i in range(start, len(steps)):
            if not events:
                return events
            try:
                events = await steps[i].run(events, self._ctx)
            except Exception as exc:
                if len(events) == 1:
                    self._ctx.retry(events[0], type(exc).__name__, exc)
                    return []
                survivors: list[Event] = []
                for event in events:
                    survivors.extend(await self._run_steps([event], i))
                return survivors
        return events

    def _route(self, events: list[Event], stats: BatchStats, now: int) -> None:
        add = self._sender.add
        static = self._static_headers
        processed_at = (H.PROCESSED_AT, str(now).encode())
        choices, default = self._choices, self._default
        topic_headers, partition_headers = self._topic_headers, self._partition_headers
        user_headers = H.user_headers
        for event in events:
            value = event.value
            try:
                chosen = default
                for condition, targets in choices:
                    if condition(value):
                        chosen = targets
                        break
                rendered = []
                shared: dict[Any, bytes] | None = None
                for target in chosen:
                    if target.shape is None:
                        rendered.append(target.render(value, event.key))
                        continue
                    # outputs of one schema and format without `set` are the same bytes: encode once
                    if shared is None:
                        shared = {}
                    payload = shared.get(target.shape)
                    if payload is None:
                        payload = shared[target.shape] = target.encode(target.project(value))
                    rendered.append((target.key_of(value, event.key), payload))
                _check_size(zip(chosen, rendered, strict=True), event)
            except OutputTooLarge as exc:
                self._ctx.reject(event, str(exc), exc)
                continue
            except Exception as exc:
                self._ctx.reject(event, f"routing_error: {exc}", exc)
                continue
            src_topic = topic_headers.get(event.source_topic)
            if src_topic is None:
                src_topic = topic_headers[event.source_topic] = (H.SRC_TOPIC, event.source_topic.encode())
            src_partition = partition_headers.get(event.source_partition)
            if src_partition is None:
                src_partition = partition_headers[event.source_partition] = (
                    H.SRC_PARTITION,
                    str(event.source_partition).encode(),
                )
            headers = [
                *static,
                src_topic,
                src_partition,
                (H.SRC_OFFSET, str(event.source_offset).encode()),
                processed_at,
            ]
            if event.headers:
                headers.extend(user_headers(event.headers))
            timestamp = event.timestamp
            for target, (key, payload) in zip(chosen, rendered, strict=True):
                add(target.topic, key, payload, headers, timestamp_ms=timestamp)
                target.sent += 1
        outputs = stats.outputs
        for target in self._targets:
            if target.sent:
                outputs[(target.route, target.topic)] += target.sent
                target.sent = 0

    def _handle_failures(self, stats: BatchStats, now: int) -> None:
        logged = 0
        for failure in self._ctx.failures:
            event = failure.event
            error_class = type(failure.error).__name__ if failure.error is not None else failure.reason
            stats.errors[error_class] += 1
            retriable = failure.retriable and (
                not self._retry_on or failure.reason in self._retry_on or error_class in self._retry_on
            )
            first_failure = event.first_failure_ms or now
            base = H.user_headers(event.headers) + self._error_headers(
                failure, error_class, first_failure, now
            )
            retry_value = None
            if retriable and event.attempt < len(self._delays):
                tier = event.attempt + 1
                due = now + self._delays[event.attempt]
                headers = [*base, (H.RETRY_ATTEMPT, str(tier).encode()), (H.RETRY_DUE, str(due).encode())]
                retry_value, headers = H.fit(event.key, event.raw_value, headers)
            if retry_value is not None:  # a retry that cannot carry its value goes to the DLQ
                self._sender.add(
                    retry_topic(self.node.input, tier),
                    event.key,
                    retry_value,
                    headers,
                    partition=event.source_partition,
                    timestamp_ms=event.timestamp,
                )
                stats.retried[tier] += 1
            else:
                value, base = H.fit(event.key, event.raw_value, base)
                self._sender.add(self._dlq, event.key, value, base, timestamp_ms=event.timestamp)
                stats.dead_lettered[failure.reason.split(":", 1)[0]] += 1
                logged += 1
                if logged > DLQ_LOG_LINES_PER_BATCH:
                    continue
                log.warning(
                    "dead-lettered: %s",
                    failure.reason,
                    extra={
                        "node": self.name,
                        "topic": event.source_topic,
                        "partition": event.source_partition,
                        "offset": event.source_offset,
                    },
                )
        if logged > DLQ_LOG_LINES_PER_BATCH:  # a flood of bad records must not flood the log too
            log.warning(
                "dead-lettered %d more records of this batch: %s",
                logged - DLQ_LOG_LINES_PER_BATCH,
                dict(stats.dead_lettered),
                extra={"node": self.name, "topic": self.node.input},
            )

    def _error_headers(
        self, failure: Failure, error_class: str, first_failure: int, now: int
    ) -> list[tuple[str, bytes]]:
        event = failure.event
        message = str(failure.error) if failure.error is not None else failure.reason
        return [
            (H.ERROR_REASON, failure.reason.encode()),
            (H.ERROR_CLASS, error_class.encode()),
            (H.ERROR_MESSAGE, message[: H.MESSAGE_LIMIT].encode()),
            (H.ERROR_STACKTRACE, H.stacktrace(failure.error).encode()),
            (H.ERROR_NODE, self.name.encode()),
            (H.ERROR_TOPOLOGY, self.spec.topology.encode()),
            (H.ERROR_VERSION, self.spec.version.encode()),
            (H.ERROR_TOPIC, event.source_topic.encode()),
            (H.ERROR_PARTITION, str(event.source_partition).encode()),
            (H.ERROR_OFFSET, str(event.source_offset).encode()),
            (H.ERROR_TIMESTAMP, str(event.timestamp).encode()),
            (H.ERROR_ATTEMPTS, str(event.attempt + 1).encode()),
            (H.ERROR_FIRST_FAILURE, str(first_failure).encode()),
            (H.ERROR_LAST_FAILURE, str(now).encode()),
        ]

    async def _commit(self, commits: dict[TopicPartition, int]) -> None:
        owned = {tp: off for tp, off in commits.items() if tp in self.assigned}
        if owned:
            await self._commit_now(owned)

    async def _commit_now(self, owned: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None
        started = time.perf_counter()
        try:
            await asyncio.wait_for(self._consumer.commit(owned), COMMIT_TIMEOUT_S)  # a hang restarts the node
            if self._observer is not None:
                highwaters = {tp: self._consumer.highwater(tp) for tp in owned}
                self._observer.committed(self, owned, highwaters, time.perf_counter() - started)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group rebalanced under us: the new owner re-reads these records (at-least-once).
            log.warning(
                "commit skipped after rebalance: %s", exc, extra={"node": self.name, "topic": self.node.input}
            )
        except KafkaError as exc:
            log.warning(
                "commit failed, the records will be re-read: %s",
                exc,
                extra={"node": self.name, "topic": self.node.input},
            )

    # ------------------------------------------------------------------ retry pacing

    def _due(self, tp: TopicPartition, records: list[Any], now: int) -> list[Any]:
        """The records of a retry partition whose time has come; at the first that has not,
        the partition is paused until then (and re-read from that record)."""
        for i, record in enumerate(records):
            due = _header_int(record.headers, H.RETRY_DUE)
            if due > now:
                self._pause_until(tp, record.offset, due - now)
                return records[:i]
        return records

    def _pause_until(self, tp: TopicPartition, offset: int, delay_ms: int) -> None:
        assert self._consumer is not None
        self._consumer.pause(tp)
        self._consumer.seek(tp, offset)
        old = self._resume_handles.pop(tp, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._resume_handles[tp] = loop.call_later(delay_ms / 1000, self._resume, tp)

    def _resume(self, tp: TopicPartition) -> None:
        self._resume_handles.pop(tp, None)
        if self._consumer is not None and tp in self._consumer.assignment():
            self._consumer.resume(tp)

    # ------------------------------------------------------------------ rebalancing

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._lock:  # let the in-flight batch finish first
            # A commit still pending is dropped, not awaited: aiokafka's commit waits for the
            # group, and the group waits for this callback (a deadlock seen when the broker came
            # back after an outage). Its records are re-read by their next owner (at-least-once).
            commit, self._commit_task = self._commit_task, None
            if commit is not None and not commit.done():
                commit.cancel()
            try:
                await self.settle()
            except Exception as exc:  # raised in the loop, which starts the node over
                self._failure = exc
            self.assigned -= revoked  # records of these fetched earlier must not be processed now
            for tp in revoked:
                handle = self._resume_handles.pop(tp, None)
                if handle is not None:
                    handle.cancel()

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        # aiokafka starts fetching the new partitions before this callback returns: hold the
        # lock so that no batch runs against tables still being restored (it would compute on
        # empty state, and the restore would then overwrite what it wrote).
        async with self._lock:
            await self._on_assigned(assigned)

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        self.recovering = True
        if self._observer is not None:
            self._observer.recovering(self, True)
        try:
            partitions = {tp.partition for tp in assigned if tp.topic == self.node.input}
            observer = self._observer
            for table in self.local_tables:
                table.forget(table.partitions() - partitions)
                todo = [TopicPartition(table.changelog, p) for p in sorted(partitions) if not table.owns(p)]
                for tp in todo:
                    table.claim(tp.partition)
                restored = await read_to_end(
                    self._client_args,
                    todo,
                    lambda r, t=table: t.apply(r.partition, r.key, r.value),
                    progress=None if observer is None else partial(observer.restoring, self, table.name),
                )
                if todo:
                    log.info(
                        "restored table %s partitions %s: %d records",
                        table.name,
                        [tp.partition for tp in todo],
                        restored,
                        extra={"node": self.name},
                    )
            self.assigned = set(assigned)
        finally:
            self.recovering = False
            if self._observer is not None:
                self._observer.recovering(self, False)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, runner: NodeRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._runner.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._runner.on_assigned(set(assigned))
        if self._runner._observer is not None:
            self._runner._observer.rebalanced(self._runner)


def _range_assignor() -> Any:
    """Range assignment gives every member the same partition numbers of the input and of its
    retry topics, so a retried record meets the state of its partition again."""
    return RangePartitionAssignor


class OutputTooLarge(ValueError):
    """An output record that no broker with default limits accepts: the event goes to the DLQ
    (a record that can never be produced would otherwise fail its batch on every restart)."""


_LARGE = 64 * 1024  # only outputs above this size are measured exactly


def _check_size(outputs: Any, event: Event) -> None:
    """Raise :class:`OutputTooLarge` if an output of ``event`` exceeds ``H.MAX_RECORD_BYTES``;
    ``outputs`` yields ``(target, (key, payload))``. Lineage headers are counted as 1 KiB."""
    for target, (key, payload) in outputs:
        if len(payload) > _LARGE:
            size = H.record_size(key, payload, H.user_headers(event.headers)) + 1024
            if size > H.MAX_RECORD_BYTES:
                raise OutputTooLarge(
                    f"output_too_large: {size} bytes for {target.topic} (limit {H.MAX_RECORD_BYTES})"
                )


async def _stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """``consumer.stop()``, except that a CancelledError raised from inside aiokafka (its fetcher
    cancels and awaits its own fetch task, which leaks out when the broker is gone) does not end
    the node's task: only a cancellation of the task itself is passed on."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.warning("consumer stop was interrupted inside aiokafka; continuing")


def _header_int(headers: Any, name: str) -> int:
    for key, value in headers:
        if key == name:
            try:
                return int(value)
            except (TypeError, ValueError):
                return 0
    return 0


def _restore_origin(event: Event) -> None:
    """A retried record carries where it first came from; lineage and DLQ headers report that."""
    values = H.as_dict(event.headers)
    event.source_topic = values.get(H.ERROR_TOPIC, event.topic)
    event.source_partition = int(values.get(H.ERROR_PARTITION, event.partition))
    event.source_offset = int(values.get(H.ERROR_OFFSET, event.offset))
    first = values.get(H.ERROR_FIRST_FAILURE)
    event.first_failure_ms = int(first) if first else None
    timestamp = values.get(H.ERROR_TIMESTAMP)
    if timestamp:
        event.timestamp = int(timestamp)
