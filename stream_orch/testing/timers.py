"""What the worker's timers would write by a time, for the test driver's ``tick``: the tick
records of scheduled nodes (:mod:`stream_orch.runtime.ticker`'s ``Ticker``) and the punctuation
records of nodes with ``punctuate`` (its ``Punctuator``)."""

from __future__ import annotations

import orjson

from stream_orch.reliability import headers as H
from stream_orch.topology.models import TopologySpec

Record = tuple[str, int, bytes | None, list[tuple[str, bytes]]]  # topic, partition, value, headers


def tick_records(spec: TopologySpec, now_ms: int, announced: dict[str, int]) -> list[Record]:
    """A tick record per scheduled node whose latest tick due by ``now_ms`` it has not announced
    yet (``announced``: node -> the last tick written, updated here)."""
    out: list[Record] = []
    for name, node in spec.nodes.items():
        if node.schedule is None:
            continue
        due = node.schedule.clock().latest_at_or_before(now_ms)
        if due is None or due <= announced.get(name, -1):
            continue
        announced[name] = due
        out.append((node.input, 0, orjson.dumps({"tick": due}), []))
    return out


def punctuation_records(
    spec: TopologySpec, now_ms: int, partitions: dict[str, int], last_at: dict[tuple[str, int], int]
) -> list[Record]:
    """A punctuation record per input partition of a node with ``punctuate`` that has had no
    record for ``punctuate.every`` by ``now_ms`` (``last_at``: (topic, partition) -> the clock at
    its last record)."""
    out: list[Record] = []
    for node in spec.nodes.values():
        if node.punctuate is None:
            continue
        mark = str(now_ms - node.punctuate.lateness).encode()
        for p in range(partitions[node.input]):
            if now_ms - last_at.get((node.input, p), 0) >= node.punctuate.every:
                out.append((node.input, p, None, [(H.WATERMARK_ONLY, b""), (H.PUNCTUATION, mark)]))
    return out
