"""A scheduled node, as the engine runs it: a node like any other, reading the one-partition
internal topic ``<topology>.<node>.ticks`` (the way :mod:`stream_orch.topology.repartition`
makes a re-keying node two plain nodes, so the runtime needs little new).

* The consumer group owns the ticks topic's one partition, so one worker of the topology at a
  time is the node's owner, as for any partition, through restarts and rebalances.
* The owner's ticker (:mod:`stream_orch.runtime.ticker`) appends a tick record
  ``{"tick": <epoch ms>}`` when a tick falls due (and, on taking the partition over, one for the
  latest tick due, which lets the node catch up).
* The node's first step, ``tick`` (:mod:`stream_orch.steps.tick`), keeps the last tick fired in
  the internal table ``<node>.ticks`` (changelog ``<topology>.<node>.ticks.changelog``) and fires
  only ticks after it, per ``catch_up``: a tick record written twice (two workers during a
  rebalance, a ticker restarted) fires nothing the second time. Under exactly_once the table's
  write, the tick's outputs and the tick record's offset are one transaction: a tick is fired
  with its outputs or not at all, and after a crash the new owner fires it again from the
  committed state.
"""

from __future__ import annotations

from stream_orch.topology.models import TableSpec, TopicSpec, TopologySpec
from stream_orch.topology.models_schedule import TickStep
from stream_orch.topology.naming import ticks_table, ticks_topic

__all__ = ["expand_schedules", "is_scheduled"]


def is_scheduled(spec: TopologySpec, node: str) -> bool:
    return spec.nodes[node].schedule is not None


def expand_schedules(spec: TopologySpec) -> TopologySpec:
    """``spec`` with each scheduled node reading its ticks topic through a ``tick`` step (``spec``
    itself when it has none)."""
    scheduled = [name for name, node in spec.nodes.items() if node.schedule is not None]
    if not scheduled:
        return spec
    topics, tables, nodes = dict(spec.topics), dict(spec.tables), dict(spec.nodes)
    replication = max((t.replication for t in spec.topics.values() if t.replication), default=None)
    for name in scheduled:
        node = spec.nodes[name]
        assert node.schedule is not None
        topic = ticks_topic(spec.topology, name)
        topics[topic] = TopicSpec(
            partitions=1,
            replication=replication,
            retention=7 * 86_400_000,
            description=f"internal: tick records of scheduled node {name} ({node.schedule.describe()})",
        )
        table = ticks_table(name)
        tables[table] = TableSpec(store="memory", description=f"internal: last tick fired by node {name}")
        tick = TickStep(step="tick", table=table, schedule=node.schedule)
        nodes[name] = node.model_copy(update={"input": topic, "steps": [tick, *node.steps]})
    return spec.model_copy(update={"topics": topics, "tables": tables, "nodes": nodes})
