"""The router's loop for one plain target (``Router._single``: no `when`, `set`, so.wm or denied
topic, as forwarding has) gives what its general loop gives: the same records in the same
partitions and order, the same rejections with their reasons, the same counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stream_orch.codecs import SchemaRegistry
from stream_orch.reliability import headers as H
from stream_orch.runtime.batch import BatchStats, NodeContext
from stream_orch.runtime.output import Outbox, PartitionMap
from stream_orch.runtime.routing import Router
from stream_orch.steps.base import Event
from stream_orch.topology.loader import load_topology

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = SchemaRegistry(REPO / "schemas")
NOW = 1_700_000_123_456

TOPOLOGY = """\
topology: single
version: "1"
topics:
  raw:
    partitions: 6
    key: account_id
  out:
    partitions: 4
    {out}
  raw.dlq:
    partitions: 6
nodes:
  forward:
    input: raw
    routes:
      - to: out
    errors:
      dlq: raw.dlq
"""


def valid(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "txn_id": f"T-{i}", "account_id": f"A-{i % 7:07d}", "customer_id": "C-000001",
        "amount": 1.5 + i, "currency": "EUR", "merchant_id": "M-1", "channel": "atm",
        "country": "DE", "ts": 1_700_000_000_000 + i, **extra,
    }  # fmt: skip


def events() -> list[Event]:
    values: list[dict[str, Any]] = [valid(i) for i in range(12)]
    values += [
        valid(20, amount=float("nan")),  # inf or nan: a schema violation without a schema too
        valid(21, amount="12"),  # not a double
        valid(22, extra={1, 2}),  # orjson cannot write a set
        valid(23, txn_id="x" * (H.MAX_RECORD_BYTES + 10)),  # too large
        {k: v for k, v in valid(24).items() if k != "account_id"},  # no key field
        valid(25, amount=None),
        valid(26, account_id=12345),  # a key that is not a string
    ]
    out = []
    for i, value in enumerate(values):
        headers: Any = [("trace", b"t-%d" % i), (H.SRC_OFFSET, b"9")] if i % 5 == 0 else []
        partition = i % 3
        source = "raw" if i % 4 else "raw.retry.1"
        event = Event(
            value, b"K-%d" % i, b"raw", headers, "raw", partition, 100 + i, 1_699_000_000_000 + i,
            i % 2, source, partition + i % 2, 50 + i,
        )  # fmt: skip
        out.append(event)
    return out


def run(spec: Any, single: bool) -> tuple[Any, list[tuple[int, str]], dict[Any, int]]:
    router = Router(spec, "forward", SCHEMAS)
    assert router._single is not None  # the topology is one the single loop takes
    if not single:
        router._single = None
    outbox = Outbox(PartitionMap({t: s.partitions for t, s in spec.topics.items()}))
    ctx = NodeContext(spec.topology, "forward", {}, {})
    stats = BatchStats()
    batch = events()
    for _ in range(2):  # a second batch: the lineage headers' cache per source partition
        router.route(batch, outbox, ctx, stats, NOW)
    failures = [(batch.index(f.event), f.reason) for f in ctx.failures]
    return outbox.take(), failures, dict(stats.outputs)


@pytest.mark.parametrize(
    "out", ["key: account_id", "key: account_id\n    schema: transaction", "", "schema: transaction"]
)
def test_the_single_target_loop_routes_as_the_general_loop(tmp_path: Path, out: str) -> None:
    path = tmp_path / "single.yaml"
    path.write_text(TOPOLOGY.format(out=out))
    spec = load_topology(path).spec
    single, general = run(spec, True), run(spec, False)
    assert single == general
    records, failures, outputs = single
    routed = sum(len(r) for pending in records.values() for r in pending.values())
    assert routed == 2 * (19 - len(failures) // 2)
    assert {reason.split(":")[0] for _, reason in failures} >= {"output_too_large", "output_schema_violation"}
    assert outputs


def test_when_set_or_more_targets_take_the_general_loop() -> None:
    spec = load_topology(REPO / "topologies" / "fraud_detection.yaml").spec
    assert Router(spec, "score_transactions", SCHEMAS)._single is None
