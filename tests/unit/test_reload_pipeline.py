"""NodePipeline.reload, the swap a node makes at a batch boundary, on the in-memory driver: the
rules change, the state does not (a step keeping state is the same object, with its marks)."""

from __future__ import annotations

import pytest

from stream_orch.runtime.swap import VersionSwap
from stream_orch.testing import TopologyTestDriver
from stream_orch.topology.loader import parse_topology
from stream_orch.topology.models import TopologySpec
from stream_orch.topology.reloadable import reload_problems
from stream_orch.topology.repartition import expand

TOPOLOGY = """\
topology: swap
version: "{version}"
constants: {{limit: {limit}}}
topics:
  in: {{partitions: 1, key: id}}
  out: {{partitions: 1, key: id}}
tables:
  seen: {{}}
nodes:
  n:
    input: in
    steps:
      - {{step: dedupe, field: id, table: seen, horizon: 1h}}
      - {{step: score, as: score, rules: [{{name: big, when: amount > limit, weight: {weight}}}]}}
    routes:
      - to: out
    errors:
      dlq: dlq
"""


def spec(version: str, limit: int, weight: float) -> TopologySpec:
    return parse_topology(TOPOLOGY.format(version=version, limit=limit, weight=weight)).spec


def test_the_next_batch_runs_the_new_rules_and_the_state_stays() -> None:
    old, new = spec("1", 100, 0.4), spec("2", 120, 0.7)
    assert reload_problems(old, new) == []
    with TopologyTestDriver(old, schemas="schemas", start_ms=1_000_000) as driver:
        pipeline = driver.nodes["n"].pipeline
        dedupe, score = pipeline.steps
        driver.pipe("in", {"id": "a", "amount": 150, "ts": 1_000_000})
        driver.pipe("in", {"id": "b", "amount": 110, "ts": 1_000_000})
        driver.process()
        pipeline.reload(expand(new))
        assert pipeline.steps[0] is dedupe and pipeline.steps[1] is not score
        driver.pipe("in", {"id": "a", "amount": 150, "ts": 1_000_001})  # a duplicate: still known
        driver.pipe("in", {"id": "c", "amount": 150, "ts": 1_000_001})
        driver.pipe("in", {"id": "d", "amount": 110, "ts": 1_000_001})  # under the new limit
        driver.process()
        out = [(r.value["id"], r.value["score"], r.headers["so.version"]) for r in driver.read("out")]
    assert out == [("a", 0.4, "1"), ("b", 0.4, "1"), ("c", 0.7, "2"), ("d", 0.0, "2")]


class _Pipeline:
    def __init__(self, fail: bool = False) -> None:
        self.specs: list[TopologySpec] = []
        self.fail = fail

    def reload(self, spec: TopologySpec) -> None:
        if self.fail:
            raise ValueError("cannot build")
        self.specs.append(spec)


async def test_a_node_swaps_to_the_newest_version_asked_for_at_its_boundary() -> None:
    swap = VersionSwap()
    pipeline = _Pipeline()
    assert swap.apply(pipeline) is None  # type: ignore[arg-type]
    first = swap.request(spec("2", 100, 0.5))
    second = swap.request(spec("3", 100, 0.6))
    assert first.cancelled() and not second.done()  # not before the boundary
    running = swap.apply(pipeline)  # type: ignore[arg-type]
    assert running is not None and running.version == "3" and second.done()
    assert [s.version for s in pipeline.specs] == ["3"]


async def test_a_version_a_node_cannot_build_leaves_it_on_its_own() -> None:
    swap = VersionSwap()
    done = swap.request(spec("2", 100, 0.5))
    assert swap.apply(_Pipeline(fail=True)) is None  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot build"):
        done.result()
