"""What a topology asks of a cluster, derived from its description alone: the topics to create
(declared, and the retry, dead-letter and changelog topics the engine adds), which topics must
share a partition count, and the tables each node writes and reads. The worker, the test driver,
`acl plan` and the shadow planner all read it from here, so they agree."""

from __future__ import annotations

from typing import Any

from stream_orch.runtime.admin import TopicPlan
from stream_orch.topology.models import JoinStep, TopologySpec
from stream_orch.topology.naming import changelog_topic, dlq_topic, retry_topics

RETRY_RETENTION_MS = 7 * 86_400_000


def table_written(step: Any) -> str | None:
    """The table a step spec writes (dedupe, aggregate, join...), if any."""
    table = getattr(step, "table", None)
    return table if table and step.writes_table else None


def tables_written_by(spec: TopologySpec, node_name: str) -> list[str]:
    """Tables a node's steps write (dedupe, aggregate, join...): they live in the node's partitions."""
    names = []
    for step in spec.nodes[node_name].steps:
        table = table_written(step)
        if table and spec.tables[table].topic is None:
            names.append(table)
    return names


def tables_read_by(spec: TopologySpec, node_name: str) -> set[str]:
    """Tables a node's steps name, and those its schedule scans."""
    node = spec.nodes[node_name]
    names = {t for s in node.steps if (t := getattr(s, "table", None))}
    if node.schedule is not None:
        names.update(scan.table for scan in node.schedule.scan)
    return names


def table_label(spec: TopologySpec, table: str) -> str:
    """``global table X`` for a table with ``global: true``, else ``table X``."""
    return f"{'global ' if spec.tables[table].global_ else ''}table {table}"


def table_loaded_message(spec: TopologySpec, table: str, partitions: int, rows: int) -> str:
    """The start-up line of a table fed by a topic. Every worker reads all its partitions, also
    for a table without ``global: true`` (lint keeps that one co-partitioned with its readers)."""
    topic = spec.tables[table].topic
    return f"{table_label(spec, table)} loaded from all {partitions} partitions of {topic}: {rows} rows"


def co_partitioned(spec: TopologySpec, node_name: str) -> list[str]:
    """A node's input, retry topics, joined streams and the changelogs of the tables it writes: a
    record's key and its state share one partition number, so all need the same partition count."""
    node = spec.nodes[node_name]
    changelogs = [changelog_topic(spec.topology, t) for t in tables_written_by(spec, node_name)]
    joined = [s.topic for s in node.steps if isinstance(s, JoinStep)]
    return [node.input, *retry_topics(node), *joined, *changelogs]


def _partners(spec: TopologySpec) -> dict[str, tuple[str, ...]]:
    groups: dict[str, tuple[str, ...]] = {}
    for name in spec.nodes:
        group = co_partitioned(spec, name)
        for topic in group:
            groups[topic] = tuple(t for t in group if t != topic)
    return groups


def declared_topic_plans(spec: TopologySpec) -> list[TopicPlan]:
    partners = _partners(spec)
    return [
        TopicPlan(name, t.partitions, t.replication, t.compact, t.retention, partners.get(name, ()))
        for name, t in spec.topics.items()
    ]


def derived_topic_plans(spec: TopologySpec) -> list[TopicPlan]:
    """Retry, dead-letter and changelog topics, partitioned like the node input they serve (as
    declared: an input with another count is refused by :func:`declared_topic_plans`' check)."""
    partners = _partners(spec)
    plans: dict[str, TopicPlan] = {}
    for name, node in spec.nodes.items():
        n = spec.topics[node.input].partitions
        replication = spec.topics[node.input].replication
        for topic in retry_topics(node):
            plans[topic] = TopicPlan(
                topic, n, replication, retention_ms=RETRY_RETENTION_MS, partners=partners[topic]
            )
        dlq = dlq_topic(node)
        if dlq not in spec.topics:
            plans[dlq] = TopicPlan(dlq, n, replication)
        for table in tables_written_by(spec, name):
            topic = changelog_topic(spec.topology, table)
            plans[topic] = TopicPlan(topic, n, replication, compact=True, partners=partners[topic])
    return list(plans.values())
