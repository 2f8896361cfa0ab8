"""Topic reconciliation: create what is missing, refuse to run against what conflicts.

A worker that silently ran against a topic with fewer partitions than declared would break
co-partitioning of its tables, so a conflict stops the worker before it consumes anything.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from stream_orch.errors import UserError
from stream_orch.transport.topics import default_replication


@dataclass(frozen=True)
class TopicPlan:
    name: str
    partitions: int
    replication: int | None = None
    """None: the cluster's ``default.replication.factor``."""
    compact: bool = False
    retention_ms: int | None = None
    # co-partitioned with these topics (a node's input, retry topics, changelogs): a key's state
    # lives on its record's partition number, so the count must match exactly, not just suffice
    partners: tuple[str, ...] = ()

    def configs(self) -> dict[str, str]:
        configs = {"cleanup.policy": "compact" if self.compact else "delete"}
        if self.retention_ms is not None:
            configs["retention.ms"] = str(self.retention_ms)
        return configs


async def ensure_topics(client_args: dict[str, Any], plans: list[TopicPlan]) -> dict[str, int]:
    """Create missing topics; return the partition count of every planned topic.

    Raises UserError naming each conflicting topic: one with fewer partitions than planned, or a
    co-partitioned one (``partners``) with more.
    """
    admin = AIOKafkaAdminClient(**client_args)
    await admin.start()
    try:
        existing = await _partition_counts(admin, [p.name for p in plans])
        problems: list[str] = []
        missing = [p for p in plans if p.name not in existing]
        for plan in plans:
            have = existing.get(plan.name)
            if have is None or have == plan.partitions:
                continue
            if have < plan.partitions:
                problems.append(
                    f"topic {plan.name!r} has {have} partitions but the topology declares {plan.partitions}"
                    " (add partitions with kafka-topics --alter, or lower `partitions`)"
                )
            elif plan.partners:
                problems.append(
                    f"topic {plan.name!r} has {have} partitions but is co-partitioned with "
                    f"{', '.join(repr(p) for p in plan.partners)} at {plan.partitions} (keys and their "
                    "state would land on different partitions: recreate it, or declare "
                    f"`partitions: {have}` for the node's input and repartition)"
                )
        present = [p for p in plans if p.name in existing]
        if present:
            policies = await _cleanup_policies(admin, [p.name for p in present])
            for plan in present:
                policy = policies.get(plan.name, "delete")
                if plan.compact and "compact" not in policy:
                    problems.append(f"topic {plan.name!r} must be compacted but has cleanup.policy={policy}")
        if problems:
            raise UserError("refusing to start: " + "; ".join(problems), exit_code=1)
        if missing:
            default = await default_replication(admin) if any(p.replication is None for p in missing) else 1
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker created it meanwhile
                await admin.create_topics(
                    [
                        NewTopic(p.name, p.partitions, p.replication or default, topic_configs=p.configs())
                        for p in missing
                    ]
                )
        counts = dict(existing)
        for p in missing:
            counts[p.name] = p.partitions
        return counts
    finally:
        await admin.close()


async def partition_counts(client_args: dict[str, Any], names: list[str]) -> dict[str, int]:
    """Partition count of each named topic that exists (missing topics are left out)."""
    admin = AIOKafkaAdminClient(**client_args)
    await admin.start()
    try:
        return await _partition_counts(admin, names)
    finally:
        await admin.close()


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    # Describe only topics that exist: a metadata request for a missing topic makes a broker
    # with auto.create.topics.enable create it, with the broker's default partition count.
    existing = set(await admin.list_topics())
    names = [n for n in names if n in existing]
    if not names:
        return {}
    metadata = await admin.describe_topics(names)
    counts: dict[str, int] = {}
    for topic in metadata:
        if topic.get("error_code", 0) == 0 and topic.get("partitions"):
            counts[topic["topic"]] = len(topic["partitions"])
    return counts


async def _cleanup_policies(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, str]:
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    )
    policies: dict[str, str] = {}
    for response in responses:
        for resource in response.resources:
            # (error_code, error_message, resource_type, resource_name, configs)
            name, configs = resource[3], resource[4]
            for entry in configs:
                if entry[0] == "cleanup.policy":
                    policies[name] = entry[1]
    return policies
