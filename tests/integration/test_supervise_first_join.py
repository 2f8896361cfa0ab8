"""`stream-orch run --processes 2` starts its members behind a gate and they join each group
together: on this broker (group.initial.rebalance.delay.ms=0) every member then receives exactly
one assignment per node, from one generation holding both, instead of the first member taking
every partition and handing half back at a rebalance. Records are counted afterwards: exactly_once,
nothing lost, nothing twice, velocities equal to the reference computed from the input."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from stream_orch.topology.loader import load_topology
from stream_orch.topology.models import JoinStep
from stream_orch.topology.naming import retry_topics
from stream_orch.topology.repartition import expand
from tests import reliability_harness as rh
from tests.integration.test_supervise_processes import _wait_ready
from tests.topology_harness import Samples, free_port, scrape, summed_by

pytestmark = pytest.mark.integration


def _per_node_member(samples: dict, metric: str) -> dict[tuple[str, ...], float]:
    return summed_by(samples, metric, "node", "member")


def _shared_partitions(path: Path) -> dict[str, int]:
    """Per node, the partitions its group shares out: its input's, its retry tiers' and its joined
    streams' (all partitioned like its input)."""
    spec = expand(load_topology(path).spec)
    return {
        name: spec.topics[node.input].partitions
        * (1 + len(retry_topics(node)) + sum(isinstance(s, JoinStep) for s in node.steps))
        for name, node in spec.nodes.items()
    }


async def _settled(url: str, partitions: dict[str, int], log: Callable[[], str]) -> Samples:
    """The members' metrics once every node's members hold assignments of one generation: theirs
    add up to the node's partitions exactly. A member still holding an earlier generation's
    assignment makes more (a first generation without its partner gave it all of them), so a late
    generation has reached every member (and its count of assignments) when this returns."""
    deadline = time.monotonic() + 30
    while True:
        samples = await scrape(url)
        summed = summed_by(samples, "stream_orch_assigned_partitions", "node")
        held = {node: n for (node,), n in summed.items()}
        if held == partitions:
            return samples
        assert time.monotonic() < deadline, f"assignments never added up: {held}, not {partitions}\n{log()}"
        await asyncio.sleep(0.2)


async def test_two_processes_start_in_one_generation(tmp_path: Path) -> None:
    path, t, _group = rh.fraud_copy(tmp_path, processing="exactly_once")
    sup = rh.worker(path, tmp_path / "supervisor.log", metrics_port=free_port())
    profiles, txns, expected = rh.crafted(300, 20)
    enriched, dlq = t["transactions.enriched"], t["transactions.dlq"]
    try:
        sup.start("--processes", "2")
        await _wait_ready(sup.url)
        samples = await _settled(sup.url, _shared_partitions(path), sup.log)
        rebalances = _per_node_member(samples, "stream_orch_rebalances_total")
        nodes = {node for node, _member in rebalances}
        assert nodes and {m for _n, m in rebalances} == {"0", "1"}, rebalances
        # one assignment per member and node: no generation before the one holding both
        assert set(rebalances.values()) == {1.0}, f"{rebalances}\n{sup.log()}"
        assert "score_transactions" in nodes, nodes
        await rh.produce_bulk(t["customers"], profiles)
        clean = t["customers.clean"]
        assert await rh.global_table_loaded([sup.url], clean, len(profiles), members=2), sup.log()
        async with rh.Watcher([t[name] for name in rh.FRAUD_OUTPUTS]) as watch:
            coords = await rh.produce_bulk(t["transactions"], txns)
            inputs = list(zip(coords, (v for _k, v in txns), strict=True))
            acc = await rh.wait_accounted(watch, inputs, enriched, dlq, timeout=90)
            await watch.poll(2.0)  # a late second copy would show up now
        found = rh.verdict(watch.records, enriched, expected)
        rh.record_result(
            "--processes 2, exactly_once: members join together (one generation)",
            **acc.figures(),
            **found.figures(),
        )
        found.assert_exactly_once(acc, expected, sup.log())
        samples = await scrape(sup.url)
        assert _per_node_member(samples, "stream_orch_rebalances_total") == rebalances, "a rebalance later"
        # that one generation shared the 6-partition input: both members scored transactions
        consumed = _per_node_member(samples, "stream_orch_events_in_total")
        assert all(consumed[("score_transactions", m)] > 0 for m in "01"), consumed
        assert sup.terminate() == 0, sup.log()
    finally:
        sup.stop()
