"""Names the engine derives from a topology: retry, dead-letter and changelog topics, groups.

Lint, the graph drawing, the runtime and the DLQ tools all use these, so a name is decided once.
"""

from __future__ import annotations

from stream_orch.topology.models import NodeSpec


def retry_topic(input_topic: str, tier: int) -> str:
    return f"{input_topic}.retry.{tier}"


def retry_topics(node: NodeSpec) -> list[str]:
    if node.errors is None or node.errors.retry is None:
        return []
    return [retry_topic(node.input, n) for n in range(1, len(node.errors.retry.delays) + 1)]


def dlq_topic(node: NodeSpec) -> str:
    if node.errors is not None and node.errors.dlq:
        return node.errors.dlq
    return f"{node.input}.dlq"


def changelog_topic(topology: str, table: str) -> str:
    return f"{topology}.{table}.changelog"


def group_id(topology: str, node: str) -> str:
    return f"{topology}.{node}"
