"""``TopologyTestDriver``: a topology run in-process, without a broker, by the worker's own code.

Each node is the worker's :class:`~stream_orch.runtime.pipeline.NodePipeline` (the codec, the
steps built by ``build_step``, the ``Router`` and the ``FailureRouter``), its tables are
``LocalTable`` s on memory stores, and what a batch emits goes through an ``Outbox`` (murmur2
partitioning, as the worker produces). The broker is replaced by in-memory topic partitions:

* records piped into a topic, and every output, retry and dead letter (and, if asked for, the
  tables' changelog records), are appended to their topic's partition with the next offset;
* a node reads its input and its retry tiers from its positions in those partitions, in batches
  of up to its ``batch_size``; records are processed in the order they arrived over all topics
  (a batch of one node never takes a record that arrived after one still waiting for another
  node), so a profile piped after a transaction is not yet there for it;
* a record routed to another node's input flows on to that node; a record written to a topic
  that feeds a table updates the table at once;
* a retry tier's record waits until the driver's clock reaches its ``so.retry.due``;
  :meth:`TopologyTestDriver.advance` moves the clock, stopping at every due time on the way,
  as the worker's paused retry partitions resume;
* a batch's table writes land in the stores once the batch is done (its overlays are sealed and
  landed, as after a delivery).

``tick`` moves the clock and writes what the worker's timers would have written by then: the
tick records of scheduled nodes and the punctuation records of idle partitions
(:mod:`stream_orch.testing.timers`).

Processing is lazy: ``pipe`` only appends; reading anything (outputs, tables, stats) or
advancing the clock first processes everything that can be.
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import itertools
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
from aiokafka import TopicPartition

from stream_orch.codecs.schemas import SchemaRegistry
from stream_orch.reliability import headers as H
from stream_orch.runtime.batch import BatchStats
from stream_orch.runtime.node import PRUNE_INTERVAL_S
from stream_orch.runtime.output import Outbox, PartitionMap
from stream_orch.runtime.pipeline import NodePipeline
from stream_orch.runtime.topic_plans import declared_topic_plans, derived_topic_plans, tables_written_by
from stream_orch.state.store import MemoryStore
from stream_orch.state.tables import LocalTable
from stream_orch.state.topic_rows import TopicRows, table_row_decoder
from stream_orch.steps.base import Table
from stream_orch.testing.records import OutputRecord, Stored, encode_value, output_record, value_decoder
from stream_orch.testing.timers import punctuation_records, tick_records
from stream_orch.testing.topic_logs import TopicLogs, by_seq
from stream_orch.topology.loader import LoadedTopology, find_schemas_dir, load_topology
from stream_orch.topology.models import TopologySpec
from stream_orch.topology.naming import changelog_topic, dlq_topic, retry_topics
from stream_orch.topology.repartition import expand

HeadersIn = Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes]] | None


class _Node:
    """One node of the topology: its pipeline, tables, positions and running totals."""

    def __init__(self, name: str, pipeline: NodePipeline, tables: dict[str, Table], partitions: int) -> None:
        self.name = name
        self.pipeline = pipeline
        self.tables = tables
        self.local_tables = [t for t in tables.values() if isinstance(t, LocalTable)]
        self.partitions = partitions
        self.positions: dict[tuple[str, int], int] = {}  # (topic, partition) -> next offset
        self.next_prune_ms = 0
        self.longest_wait_ms = pipeline.longest_wait_ms
        self.totals = {
            "records_in": 0,
            "outputs": Counter(),
            "dropped": Counter(),
            "dead_lettered": Counter(),
            "dead_lettered_steps": Counter(),  # step label (or decode, route, deliver) -> n
            "retried": Counter(),
            "errors": Counter(),
        }


class TopologyTestDriver:
    """A topology processed in memory; see the module docstring.

    ``topology``: a YAML path, a loaded topology or a spec. ``schemas``: a folder or a
    registry (default: ``schemas/`` beside the topology file, else ``./schemas``). ``env``:
    the values of ``${VAR}`` in the file (default: the environment). ``start_ms``: the clock's
    start, epoch ms (default: now). ``changelogs``: also write the tables' changelog records to
    their topics, as the worker does (off by default: the stores get every write regardless, and
    encoding them costs about a tenth of the driver's time on the fraud topology).
    ``dlq_tracebacks``: stack traces in dead letters, as the worker's setting of that name. Use it
    as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        topology: str | Path | LoadedTopology | TopologySpec,
        *,
        schemas: str | Path | SchemaRegistry | None = None,
        env: Mapping[str, str] | None = None,
        start_ms: int | None = None,
        changelogs: bool = False,
        dlq_tracebacks: bool = False,
        denied_outputs: frozenset[str] = frozenset(),
    ) -> None:
        """``denied_outputs``: output topics the worker's user may not write, as a worker finds
        them at start (their events go where the error policy sends ``not_authorized``)."""
        path: Path | None = None
        if isinstance(topology, TopologySpec):
            spec = topology
        elif isinstance(topology, LoadedTopology):
            spec, path = topology.spec, topology.path
        else:
            path = Path(topology)
            spec = load_topology(path, env).spec
        if not isinstance(schemas, SchemaRegistry):
            if schemas is None:  # the rule of every command (`--schemas` left out)
                schemas = find_schemas_dir(path) if path is not None else Path("schemas")
            schemas = SchemaRegistry(schemas)
        spec = expand(spec)  # a node with `repartition` steps runs as its parts, as in the worker
        self.spec = spec
        self.schemas = schemas
        self.now_ms = H.now_ms() if start_ms is None else int(start_ms)
        plans = declared_topic_plans(spec) + derived_topic_plans(spec)  # the topics `run` creates
        counts = {plan.name: plan.partitions for plan in plans}
        self._partitions = PartitionMap(dict(counts))
        self._decoders: dict[str, Any] = {t: value_decoder(spec, schemas, t) for t in counts}
        self._read_seq: dict[str, int] = {}  # topic -> last seq returned by read()
        self.fed_tables: dict[str, TopicRows] = {}
        self._feeds: dict[str, list[TopicRows]] = {}
        for name, table in spec.tables.items():
            if table.topic is not None:
                fed = TopicRows(name, table.topic, table_row_decoder(spec.topics[table.topic], schemas))
                self.fed_tables[name] = fed
                self._feeds.setdefault(table.topic, []).append(fed)
        self._logs = TopicLogs(spec.topology, counts, self._feeds)
        self.nodes: dict[str, _Node] = {}
        for name, node in spec.nodes.items():
            n = counts[node.input]
            tables: dict[str, Table] = dict(self.fed_tables)
            for table_name in tables_written_by(spec, name):
                local = LocalTable(
                    table_name, changelog_topic(spec.topology, table_name), lambda _p: MemoryStore()
                )
                for p in range(n):  # this driver owns every partition
                    local.open(p)
                tables[table_name] = local
            pipeline = NodePipeline(
                spec, name, schemas, tables, dlq_tracebacks=dlq_tracebacks, denied=denied_outputs
            )
            self.nodes[name] = _Node(name, pipeline, tables, n)
            self.nodes[name].next_prune_ms = self.now_ms + int(PRUNE_INTERVAL_S * 1000)
        self._outbox = Outbox(self._partitions)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changelogs = changelogs
        self._announced: dict[str, int] = {}  # scheduled node -> the last tick its ticker wrote

    # ------------------------------------------------------------------ input and the clock

    def pipe(
        self,
        topic: str,
        value: Any,
        *,
        key: str | bytes | int | None = None,
        timestamp: int | None = None,
        headers: HeadersIn = None,
    ) -> None:
        """Append one record to ``topic``, as a producer would send it. ``value``: a dict (JSON,
        or Avro on an Avro topic), ``bytes`` (sent as they are, e.g. malformed JSON), ``str``
        (its UTF-8 bytes) or ``None`` (a tombstone). ``key``: default the topic's ``key`` field
        of a dict value. ``timestamp``: epoch ms, default the driver's clock."""
        self._logs.partitions(topic)  # an unknown topic is an error
        raw = encode_value(self.spec, self.schemas, topic, value)
        if key is None:
            field = self.spec.topics[topic].key if topic in self.spec.topics else None
            if field and isinstance(value, dict) and value.get(field) is not None:
                key = str(value[field])
        raw_key = key if key is None or isinstance(key, bytes) else str(key).encode()
        partition = self._partitions.of(topic, raw_key)
        ts = self.now_ms if timestamp is None else int(timestamp)
        self._logs.append(topic, partition, [(raw_key, raw, ts, _headers(headers))], self.now_ms)

    def pipe_many(self, topic: str, values: Iterable[Any]) -> None:
        """``pipe`` each value with its default key and timestamp."""
        pipe = self.pipe
        collecting = gc.isenabled()
        gc.disable()  # see _run: the records held would be scanned again and again
        try:
            for value in values:
                pipe(topic, value)
        finally:
            if collecting:
                gc.enable()

    def advance(self, seconds: float) -> None:
        """Move the clock forward; every retry that falls due on the way is processed at its due
        time (so its next tier is due from then), as the worker resumes a paused retry tier."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._run(self._advance_to(self.now_ms + round(seconds * 1000)))

    def tick(self, at: int | None = None) -> list[int]:
        """Move the clock to ``at`` (epoch ms; default: where it is) and let every scheduled node's
        ticker write a tick record for its latest tick due by then, as the owning worker's ticker
        does (none when it already wrote that one); then process. Returns the ticks announced.
        What fires follows each node's ``catch_up`` from the last tick it fired. A node with
        ``punctuate`` gets a punctuation record on each input partition that had no record for
        ``punctuate.every`` by then, as the worker's punctuator writes it."""
        if at is not None:
            if at < self.now_ms:
                raise ValueError("the clock only moves forward")
            self._run(self._advance_to(int(at)))
        ticks = tick_records(self.spec, self.now_ms, self._announced)
        for topic, partition, value, headers in ticks:
            self._logs.append(topic, partition, [(None, value, None, headers)], self.now_ms)
        self.process()
        counts = self._logs.counts()
        for topic, p, value, headers in punctuation_records(
            self.spec, self.now_ms, counts, self._logs.last_at
        ):
            self._logs.append(topic, p, [(None, value, None, headers)], self.now_ms)
        self.process()
        return [orjson.loads(value or b"{}")["tick"] for _t, _p, value, _h in ticks]

    def process(self) -> None:
        """Process everything that can be now (reads and ``advance`` do this first)."""
        self._run(self._drain())

    # ------------------------------------------------------------------ what came out

    def read(self, topic: str) -> list[OutputRecord]:
        """The records written to ``topic`` since the last ``read`` of it, in the order written."""
        records = self._stored(topic, after=self._read_seq.get(topic, -1))
        if records:
            self._read_seq[topic] = records[-1].seq
        return [self._output(r) for r in records]

    def records(self, topic: str) -> list[OutputRecord]:
        """Every record of ``topic`` (piped or written), in the order written."""
        return [self._output(r) for r in self._stored(topic)]

    def dead_letters(self, node: str | None = None) -> list[OutputRecord]:
        """The records in the dead-letter topics (of ``node``, or of every node), in the order
        written, with their ``so.error.*`` headers (see :attr:`OutputRecord.error`)."""
        names = [node] if node is not None else list(self.nodes)
        topics = dict.fromkeys(dlq_topic(self.spec.nodes[n]) for n in names)
        return [self._output(r) for r in sorted((r for t in topics for r in self._stored(t)), key=by_seq)]

    def pending_retries(self, node: str | None = None) -> list[OutputRecord]:
        """Records waiting in retry tiers (not read by their node yet)."""
        self.process()
        out = []
        for name in [node] if node is not None else list(self.nodes):
            state = self.nodes[name]
            for topic in retry_topics(self.spec.nodes[name]):
                for p, log in enumerate(self._logs.partitions(topic)):
                    out += [self._output(r) for r in log[state.positions.get((topic, p), 0) :]]
        return out

    def table(self, name: str, partition: int | None = None) -> dict[str, Any]:
        """A table's content: every partition's (or one's) keys and values."""
        self.process()
        if name in self.fed_tables:
            return dict(self.fed_tables[name].items(0))
        for node in self.nodes.values():
            table = node.tables.get(name)
            if isinstance(table, LocalTable):
                parts = range(node.partitions) if partition is None else [partition]
                return {k: v for p in parts for k, v in table.items(p)}
        raise KeyError(f"no table {name!r} (tables: {', '.join(self.spec.tables)})")

    def lookup(self, table: str, key: str, partition: int | None = None) -> Any:
        """One key of a table (None when absent); without ``partition``, the first found."""
        return self.table(table, partition).get(key)

    def stats(self, node: str) -> dict[str, Any]:
        """What a node did: records in; outputs per topic; dropped, dead-lettered and error
        counts per reason; dead-lettered per step (``2.validate``, or decode, route, deliver);
        retries per tier."""
        self.process()
        totals = self.nodes[node].totals
        return {k: dict(v) if isinstance(v, Counter) else v for k, v in totals.items()}

    # ------------------------------------------------------------------ life cycle

    def close(self) -> None:
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    def __enter__(self) -> TopologyTestDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _run(self, coro: Any) -> Any:
        """Run the driver's work on its own event loop (steps may be async). From inside a
        running loop (an async test) that loop cannot be nested, so a thread runs it."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        # The cyclic GC would scan every record the driver holds, again and again while a batch
        # allocates (the worker raises its thresholds for the same reason); it runs afterwards.
        collecting = gc.isenabled()
        gc.disable()
        try:
            if not _in_a_running_loop():
                return self._loop.run_until_complete(coro)
            with ThreadPoolExecutor(1) as pool:
                return pool.submit(self._loop.run_until_complete, coro).result()
        finally:
            if collecting:
                gc.enable()

    async def _advance_to(self, target: int) -> None:
        await self._drain()
        while (due := self._next_due()) is not None and due <= target:
            self.now_ms = max(self.now_ms, due)
            await self._drain()
        self.now_ms = max(self.now_ms, target)
        await self._drain()

    def _next_due(self) -> int | None:
        """The earliest due time of a retry waiting at the head of a retry tier partition."""
        due = None
        for node in self.nodes.values():
            for topic, tier in node.pipeline.tier_of.items():
                if not tier:
                    continue
                for p, log in enumerate(self._logs.partitions(topic)):
                    pos = node.positions.get((topic, p), 0)
                    if pos < len(log):
                        at = self._due(node, log[pos])
                        due = at if due is None else min(due, at)
        return due

    async def _drain(self) -> None:
        while True:
            heads = []
            for node in self.nodes.values():
                first = self._first_ready(node)
                if first is not None:
                    heads.append((first, node.name))
            if not heads:
                return
            heads.sort()
            first, name = heads[0]
            # another node's first record (a later one: two nodes may read the same topic)
            limit = next((seq for seq, _ in heads[1:] if seq > first), None)
            await self._process(self.nodes[name], self._take(self.nodes[name], limit))

    def _ready(self, node: _Node) -> Iterable[tuple[str, int, int, list[Stored]]]:
        """(topic, partition, position, log) of the node's partitions with unread records."""
        for topic, tier in node.pipeline.tier_of.items():
            for p, log in enumerate(self._logs.partitions(topic)):
                pos = node.positions.get((topic, p), 0)
                if pos < len(log) and (not tier or self._due(node, log[pos]) <= self.now_ms):
                    yield topic, p, pos, log

    def _due(self, node: _Node, record: Stored) -> int:
        """When a retry record is due, as the worker's pacer reads it."""
        return H.retry_due(record.headers, self.now_ms, node.longest_wait_ms)

    def _first_ready(self, node: _Node) -> int | None:
        return min((log[pos].seq for _, _, pos, log in self._ready(node)), default=None)

    def _take(self, node: _Node, limit: int | None) -> dict[TopicPartition, list[Stored]]:
        """The node's next batch, at most ``batch_size`` records that are ready now and arrived
        before ``limit`` (the first record waiting for another node): as a fetch returns them,
        a run of each partition, the partition with the oldest record first."""
        size = self.spec.nodes[node.name].batch_size
        now = self.now_ms
        runs = []
        for topic, partition, pos, log in self._ready(node):
            if node.pipeline.tier_of[topic]:
                end = pos
                for record in itertools.islice(log, pos, pos + size):
                    if self._due(node, record) > now:
                        break  # a retry not due yet holds back the rest of its partition
                    end += 1
            else:
                end = min(len(log), pos + size)
            if limit is not None and log[end - 1].seq >= limit:
                end = bisect.bisect_left(log, limit, pos, end, key=by_seq)
            if end > pos:
                runs.append((log[pos].seq, topic, partition, pos, end, log))
        runs.sort()
        batch: dict[TopicPartition, list[Stored]] = {}
        for _, topic, partition, pos, end, log in runs:
            end = min(end, pos + size)
            batch[TopicPartition(topic, partition)] = log[pos:end]
            size -= end - pos
            if size <= 0:
                break
        return batch

    async def _process(self, node: _Node, batches: dict[TopicPartition, list[Stored]]) -> None:
        """One batch through the node, then its outputs, retries, dead letters (and changelog
        records) appended to their topics and its table writes landed, as after a delivery."""
        now = self.now_ms
        self._maybe_prune(node)
        stats = BatchStats()
        offsets = await node.pipeline.process(batches, self._outbox, stats, now)
        sealed = [table.seal() for table in node.local_tables]
        for tp, offset in offsets.items():
            node.positions[(tp.topic, tp.partition)] = offset
        append = self._logs.append
        for pending in self._outbox.take().values():
            for (topic, partition), records in pending.items():
                append(topic, partition, records, now)
        for batch in sealed:
            if self._changelogs:
                by_partition: dict[int, list[Any]] = {}
                for partition, key, value in batch.changes():
                    by_partition.setdefault(partition, []).append((key, value, now, []))
                for partition, records in by_partition.items():
                    append(batch.table.changelog, partition, records, now)
            batch.land({})
        totals = node.totals
        totals["records_in"] += stats.n_in
        for name in ("dropped", "retried", "errors"):
            totals[name].update(getattr(stats, name))
        for (reason, step), n in stats.dead_lettered.items():
            totals["dead_lettered"][reason] += n
            totals["dead_lettered_steps"][step] += n
        for (_route, topic), n in stats.outputs.items():
            totals["outputs"][topic] += n

    def _maybe_prune(self, node: _Node) -> None:
        """Expire old dedupe ids and windows, on the driver's clock as the worker does on its."""
        if not node.pipeline.expiring or self.now_ms < node.next_prune_ms:
            return
        node.next_prune_ms = self.now_ms + int(PRUNE_INTERVAL_S * 1000)
        node.pipeline.prune(range(node.partitions))

    def _stored(self, topic: str, after: int = -1) -> list[Stored]:
        """The records of ``topic`` after sequence number ``after``, once everything that can be
        processed has been, without watermark records."""
        self.process()
        return self._logs.stored(topic, after)

    def _output(self, record: Stored) -> OutputRecord:
        return output_record(record, self._decoders)


def _in_a_running_loop() -> bool:
    """Whether this thread runs an event loop. Nothing may run inside the except clause here:
    every error it raised would chain the RuntimeError (and show it in dead letters)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _headers(headers: HeadersIn) -> list[tuple[str, bytes]]:
    if not headers:
        return []
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(k), v if isinstance(v, bytes) else str(v).encode()) for k, v in pairs]
