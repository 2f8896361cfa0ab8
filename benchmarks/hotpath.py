"""The per-record path without Kafka: CPU µs per input record for each stage of a node's batch.

    python -m benchmarks.hotpath                      # forward and fraud, 40k records, best of 3
    python -m benchmarks.hotpath --records 100000 --repeat 5 --only fraud

Builds the node's pieces the way ``NodeRunner`` does (codec, steps, ``Router``, ``FailureRouter``,
``Outbox``, tables), feeds it the benchmark data set as fetched records in batches of the node's
``batch_size`` spread over 6 partitions, and times each stage with the process CPU clock:

* ``decode``: ``decode_records`` (an ``Event`` per record, JSON decode);
* one row per step;
* ``route + outbox.add``: ``Router.route`` into an ``Outbox`` (conditions, projection, encoding,
  lineage headers, partitioning). Not split further: routing into an outbox that keeps nothing
  runs on different memory (nothing is kept, so no fresh pages) and the difference misleads;
* ``failures``: ``FailureRouter.route`` (retries and dead letters);
* ``changelog``: the tables' changes of the batch into the state outbox;
* ``land``: the batch's table writes into the stores once "acknowledged" (``Sealed.land``);
  with ``--store rocks`` RocksDB stores in a temporary folder, as a worker has them by default
  (then the steps' table reads are RocksDB reads too), else memory stores;
* ``produce``: the hand-over's record batches (``transport/records.py``'s ``RecordBatch``, as a
  worker's uncompressed producer has them, then the batch built with its CRC) on a producer
  stand-in whose ``send_batch`` returns at once.

What only a run has (aiokafka's fetch and produce requests, the socket, the node's loop):
``benchmarks.profile_stages`` on a py-spy profile of a worker in a run.

Each repetition starts with fresh tables (else dedupe would drop the second pass); per stage the
best repetition is reported, which is the figure least disturbed by other work on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.structs import ConsumerRecord, RecordMetadata

from benchmarks.data import make_dataset, partition_for
from stream_orch.codecs import codec_for
from stream_orch.codecs.schemas import DEFAULT_SCHEMA_DIR, SchemaRegistry
from stream_orch.runtime import output
from stream_orch.runtime.batch import BatchStats, NodeContext, decode_records
from stream_orch.runtime.failures import FailureRouter
from stream_orch.runtime.output import Outbox, PartitionMap, merged
from stream_orch.runtime.pipeline import declare_local_keys
from stream_orch.runtime.routing import Router
from stream_orch.state.global_table import GlobalTable
from stream_orch.state.store import store_opener
from stream_orch.state.tables import LocalTable
from stream_orch.steps.base import LineageStep
from stream_orch.steps.registry import build_step, link_steps
from stream_orch.topology.loader import load_topology
from stream_orch.topology.models import TopologySpec
from stream_orch.topology.naming import changelog_topic, retry_topic

REPO = Path(__file__).resolve().parents[1]
TOPOLOGIES = {
    "forward": (REPO / "benchmarks" / "topologies" / "forward.yaml", "forward"),
    "fraud": (REPO / "topologies" / "fraud_detection.yaml", "score_transactions"),
}
PARTITIONS = 6
_clock = time.process_time_ns


class _Producer:
    """What ``output._send`` needs of a producer: record batches, sent nowhere. Its accumulator's
    settings are those ``output._record_batches`` reads (a worker's producer: 1 MiB, none)."""

    _message_accumulator = SimpleNamespace(_batch_size=1024 * 1024, _compression_type=0)
    _txn_manager = None

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(1024 * 1024, 0)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> asyncio.Future[Any]:
        batch._build()  # the bytes the real producer would put in a request
        future = asyncio.get_running_loop().create_future()
        tp = TopicPartition(topic, partition)
        future.set_result(RecordMetadata(topic, partition, tp, 0, None, 0, -1))  # as the broker acks
        return future


def fetched(
    records: list[dict[str, Any]], topic: str, batch_size: int
) -> list[dict[TopicPartition, list[Any]]]:
    """The data set as ``getmany`` would hand it over: batches of records by partition."""
    out: list[dict[TopicPartition, list[Any]]] = []
    offsets: dict[int, int] = defaultdict(int)
    for start in range(0, len(records), batch_size):
        batch: dict[TopicPartition, list[Any]] = {}
        for rec in records[start : start + batch_size]:
            key = str(rec["account_id"]).encode()
            p = partition_for(key, PARTITIONS)
            value = orjson.dumps(rec)
            offset = offsets[p]
            offsets[p] += 1
            record = ConsumerRecord(
                topic, p, offset, 1_700_000_000_000, 0, key, value, None, len(key), len(value), []
            )
            batch.setdefault(TopicPartition(topic, p), []).append(record)
        out.append(batch)
    return out


class Node:
    """A node's pieces as ``NodeRunner`` builds them, with fresh tables."""

    def __init__(
        self,
        name: str,
        profiles: dict[str, Any],
        spec: TopologySpec | None = None,
        state_dir: Path | None = None,
    ) -> None:
        """``spec``: the topology to run instead of the file's (a variant of it, same node);
        ``state_dir``: RocksDB stores there (a fresh folder per pass), else memory stores."""
        path, node_name = TOPOLOGIES[name]
        spec = spec if spec is not None else load_topology(path).spec
        schemas = SchemaRegistry(DEFAULT_SCHEMA_DIR)
        node = spec.nodes[node_name]
        self.input = node.input
        self.batch_size = node.batch_size
        tables: dict[str, Any] = {}
        for table_name, table in spec.tables.items():
            if table.topic is not None:
                glob = GlobalTable(table_name, table.topic, PARTITIONS, {}, None)
                glob._data = profiles
                tables[table_name] = glob
            else:
                opener = (
                    store_opener("rocks", state_dir / table_name, root=state_dir)
                    if state_dir is not None
                    else None
                )
                tables[table_name] = LocalTable(
                    table_name, changelog_topic(spec.topology, table_name), opener
                )
        self.local_tables = [t for t in tables.values() if isinstance(t, LocalTable)]
        for table in self.local_tables:  # this worker owns every partition
            for p in range(PARTITIONS):
                (table.open if hasattr(table, "open") else table.claim)(p)
        self.decode = codec_for(spec.topics[node.input], schemas).decode
        self.steps = [
            build_step(s, topology_spec=spec, schemas=schemas, node_name=node_name) for s in node.steps
        ]
        link_steps(self.steps)  # as NodePipeline does
        declare_local_keys(self.steps, node.steps, tables)  # dedupe's index: local, as in a node
        self.ctx = NodeContext(spec.topology, node_name, dict(spec.constants), tables)
        lineage = [h for s in self.steps if isinstance(s, LineageStep) for h in s.lineage_headers]
        self.router = Router(spec, node_name, schemas, lineage=lineage)
        self.failures = FailureRouter(spec, node_name)
        self.tier_of = {node.input: 0}
        for n in range(1, len(self.failures.delays) + 1):
            self.tier_of[retry_topic(node.input, n)] = n
        counts = {t: PARTITIONS for t in spec.topics}
        counts.update(
            {retry_topic(node.input, n): PARTITIONS for n in range(1, len(self.failures.delays) + 1)}
        )
        counts.update({t.changelog: PARTITIONS for t in self.local_tables})
        counts[self.failures._dlq] = PARTITIONS
        self.partitions = PartitionMap(counts)
        self.step_names = [type(s).__name__.removesuffix("StepImpl").lower() for s in self.steps]


async def one_pass(
    name: str,
    profiles: dict[str, Any],
    batches: list[dict[TopicPartition, list[Any]]],
    spec: TopologySpec | None = None,
    state_dir: Path | None = None,
) -> tuple[dict[str, int], int]:
    """CPU ns per stage over the whole data set with fresh state, and the output records."""
    node = Node(name, profiles, spec, state_dir)
    spent: dict[str, int] = defaultdict(int)
    producer = _Producer()
    outputs = 0
    now = 1_700_000_000_000
    for batch in batches:
        stats = BatchStats()
        ctx = node.ctx
        ctx.reset()
        t0 = _clock()
        events, _ = decode_records(batch, node.tier_of, dict.fromkeys(node.tier_of, node.decode), ctx, stats)
        t1 = _clock()
        spent["decode"] += t1 - t0
        for step, step_name in zip(node.steps, node.step_names, strict=True):
            t0 = _clock()
            events = await step.run(events, ctx)
            spent[f"step {step_name}"] += _clock() - t0
        outbox = Outbox(node.partitions)
        t0 = _clock()
        node.router.route(events, outbox, ctx, stats, now)
        spent["route + outbox.add"] += _clock() - t0
        t0 = _clock()
        node.failures.route(ctx.failures, outbox, stats, now)
        spent["failures"] += _clock() - t0
        for step in node.steps:
            release = getattr(step, "release", None)
            if release is not None:
                release([f.event for f in ctx.failures])
        t0 = _clock()
        state = Outbox(node.partitions)
        sealed = []
        for table in node.local_tables:
            if hasattr(table, "seal"):  # tables that keep a batch's writes until the changelog has them
                sealed.append(table.seal())
                for partition, records in sealed[-1].changelog().items():  # as NodeRunner does
                    state.extend(partition, table.changelog, partition, records)
            else:
                for partition, key, value in table.drain_changes():
                    state.add(partition, table.changelog, key, value, partition=partition)
        state_out = state.take()
        spent["changelog"] += _clock() - t0
        by_task = outbox.take()
        outputs += sum(len(r) for pending in by_task.values() for r in pending.values())
        t0 = _clock()
        for pending in (merged(by_task), merged(state_out) if state_out else {}):
            await (await output._send(producer, pending))  # type: ignore[arg-type]
        spent["produce"] += _clock() - t0
        t0 = _clock()
        for batch_writes in sealed:
            batch_writes.land({})
        spent["land"] += _clock() - t0
    for table in node.local_tables:
        table.close()
    return spent, outputs


def measure(
    name: str, n: int, repeat: int, spec: TopologySpec | None = None, store: str = "memory"
) -> tuple[dict[str, float], int]:
    data = make_dataset(n)
    profiles = {c["customer_id"]: c for c in data.customers}
    node = Node(name, profiles, spec)
    batches = fetched(data.transactions, node.input, node.batch_size)
    # The data set is not part of a worker's heap: keep it out of the collector's generations,
    # or every collection would walk it and charge whichever stage happened to allocate.
    gc.collect()
    gc.freeze()
    best: dict[str, int] = {}
    outputs = 0
    for _ in range(repeat):
        state_dir = Path(tempfile.mkdtemp(prefix="hotpath-")) if store == "rocks" else None
        try:
            spent, outputs = asyncio.run(one_pass(name, profiles, batches, spec, state_dir))
        finally:
            if state_dir is not None:
                shutil.rmtree(state_dir, ignore_errors=True)
        for stage, ns in spent.items():
            best[stage] = min(best.get(stage, ns), ns)
    gc.unfreeze()
    return {stage: ns / 1000 / n for stage, ns in best.items()}, outputs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hotpath", description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=40_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=sorted(TOPOLOGIES), help="one topology instead of both")
    parser.add_argument(
        "--store", choices=["memory", "rocks"], default="memory", help="the local tables' stores"
    )
    args = parser.parse_args(argv)
    for name in [args.only] if args.only else list(TOPOLOGIES):
        table, outputs = measure(name, args.records, args.repeat, store=args.store)
        print(f"\n{name}: {args.records:,} records in, {outputs:,} out")
        print(f"CPU µs per input record, best of {args.repeat}")
        print("| stage | µs |\n| --- | ---: |")
        for stage, us in table.items():
            print(f"| {stage} | {us:.2f} |")
        print(f"| **total** | **{sum(table.values()):.2f}** |")


if __name__ == "__main__":
    main()
