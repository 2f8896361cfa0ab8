"""A node of per-record steps runs its batch in slices (``NodePipeline.sliced``): the outputs,
dead letters (in the same order), offsets and counts are those of one pass over the batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from stream_orch.codecs import SchemaRegistry
from stream_orch.runtime import pipeline as pipeline_module
from stream_orch.runtime.batch import BatchStats, slices
from stream_orch.runtime.output import Outbox, PartitionMap
from stream_orch.runtime.pipeline import NodePipeline
from stream_orch.topology.loader import load_topology

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = SchemaRegistry(REPO / "schemas")
NOW = 1_700_000_123_456

TOPOLOGY = """\
topology: sliced
version: "1"
topics:
  raw:
    partitions: 3
    key: account_id
  out:
    partitions: 4
    key: account_id
  raw.dlq:
    partitions: 3
nodes:
  forward:
    input: raw
    steps:
      - step: derive
        fields:
          double: amount * 2
      - step: filter
        when: amount != 7
      - step: derive
        fields:
          half: double / amount
    routes:
      - to: out
    errors:
      dlq: raw.dlq
"""


def value(i: int) -> bytes | None:
    if i % 97 == 5:
        return b"{not json"
    if i % 89 == 6:
        return None
    if i % 83 == 7:
        return orjson.dumps({"account_id": f"A-{i}", "amount": "x"})  # derive fails
    if i % 79 == 8:
        return orjson.dumps({"account_id": f"A-{i}", "amount": 0})  # the second derive fails
    amount = 7 if i % 31 == 0 else i % 50 + 1  # filtered at 7
    big = 1e308 if i % 71 == 9 else 1.0  # double is inf: not finite, rejected by derive
    return orjson.dumps({"account_id": f"A-{i % 40}", "amount": amount * big, "n": i})


def batches(sizes: list[int]) -> dict[TopicPartition, list[Any]]:
    out: dict[TopicPartition, list[Any]] = {}
    i = 0
    for partition, size in enumerate(sizes):
        records = []
        for offset in range(size):
            raw = value(i)
            key = b"A-%d" % i
            records.append(
                ConsumerRecord(
                    "raw", partition, 10 + offset, 1_700_000_000_000 + i, 0, key, raw, None, 0, 0, []
                )
            )
            i += 1
        out[TopicPartition("raw", partition)] = records
    return out


async def run(spec: Any, fetched: dict[TopicPartition, list[Any]], sliced: bool) -> Any:
    pipeline = NodePipeline(spec, "forward", SCHEMAS, {})
    assert pipeline.sliced
    pipeline.sliced = sliced
    outbox = Outbox(PartitionMap({t: s.partitions for t, s in spec.topics.items()}))
    stats = BatchStats()
    offsets = await pipeline.process(fetched, outbox, stats, NOW)
    failures = [(f.event.partition, f.event.offset, f.reason, f.step) for f in pipeline.ctx.failures]
    counts = (stats.n_in, dict(stats.outputs), dict(stats.dropped), stats.timestamps_ms)
    return outbox.take(), failures, offsets, counts


@pytest.mark.parametrize("sizes", [[700, 0, 300], [256, 257, 1], [5, 3, 2]])
async def test_a_batch_in_slices_gives_what_one_pass_gives(tmp_path: Path, sizes: list[int]) -> None:
    path = tmp_path / "sliced.yaml"
    path.write_text(TOPOLOGY)
    spec = load_topology(path).spec
    fetched = batches(sizes)
    in_slices, whole = await run(spec, fetched, True), await run(spec, fetched, False)
    assert in_slices == whole
    _, failures, _, (n_in, _, dropped, _) = in_slices
    assert n_in == sum(sizes)
    if sum(sizes) > pipeline_module.SLICE:
        assert len({step for *_, step in failures}) >= 3  # decode, both derives
        assert dropped


def test_slices_keep_the_order_and_split_partitions() -> None:
    fetched = {TopicPartition("t", p): list(range(p * 100, p * 100 + n)) for p, n in enumerate([5, 0, 7, 1])}
    parts = list(slices(fetched, 4))
    assert [sum(map(len, part.values())) for part in parts] == [4, 4, 4, 1]
    assert [r for part in parts for records in part.values() for r in records] == [
        r for records in fetched.values() for r in records
    ]


def test_nodes_with_state_joins_or_windows_run_whole_batches() -> None:
    spec = load_topology(REPO / "topologies" / "fraud_detection.yaml").spec
    assert not NodePipeline(spec, "score_transactions", SCHEMAS, {}).sliced
