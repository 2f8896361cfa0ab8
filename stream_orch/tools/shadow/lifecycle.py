"""Where a shadow run starts, and its clean-up.

Start (before the shadow's worker joins its groups; each group is ``<topology>.shadow.<node>``):

- ``--from-time T``: every group reading a live input starts at the first offset whose record
  timestamp is T or later (ListOffsets by time); a partition with nothing that recent starts at
  its end. Given again, it sets the start again (a new backtest: ``shadow delete`` first, so that
  the shadow's tables start empty too).
- Without it, a shadow group that has committed offsets goes on from them (a restarted shadow);
  a new one starts at the live group's committed offsets, so that from now on every input the live
  version processes the shadow processes too, and the report has the most inputs to compare. Not
  at the latest offsets: what the live worker has not finished yet (its lag) would be seen by one
  version only. A partition the live group has not committed starts at its end.

Topics a shadow node reads that the shadow writes itself (the second node of a chain, retry
tiers, repartition topics) start from their beginning, as any new group does.
"""

from __future__ import annotations

from stream_orch.settings import Settings
from stream_orch.tools.shadow.plan import live_inputs, shadow_topics, version_plan
from stream_orch.topology.models import TopologySpec
from stream_orch.topology.naming import group_id
from stream_orch.transport import offsets as O


async def set_start(written: TopologySpec, settings: Settings, from_time_ms: int | None) -> list[str]:
    """Commit the start offsets of a shadow run of ``written``; returns one line per group."""
    plan = version_plan(written, as_shadow=True)
    live_topology = written.topology
    lines = []
    for node, topics in plan.reading(live_inputs(plan.spec)).items():
        group = group_id(plan.spec.topology, node)
        partitions = await O.partitions_of(settings, topics)
        if from_time_ms is not None:
            start = await O.offsets_at(settings, partitions, from_time_ms)
            how = "from the time given"
        else:
            if await O.committed(settings, group):
                lines.append(f"{group}: goes on from its committed offsets")
                continue
            live = await O.committed(settings, group_id(live_topology, node))
            end = await O.end_offsets(settings, partitions)
            start = {tp: live.get(tp, end[tp]) for tp in partitions}
            how = "at the live group's committed offsets"
        await O.commit(settings, group, start)
        lines.append(f"{group}: starts {how} ({sum(start.values())} records in from the beginning)")
    return lines


async def delete(written: TopologySpec, settings: Settings) -> tuple[list[str], list[str]]:
    """Delete the consumer groups and topics of ``written``'s shadow runs; returns (groups,
    topics) deleted. The shadow's worker must be stopped (a group with members is not deleted)."""
    plan = version_plan(written, as_shadow=True)
    groups = await O.delete_groups(settings, list(plan.groups))
    return groups, await O.delete_topics(settings, shadow_topics(plan))
