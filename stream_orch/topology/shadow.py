"""A topology as a shadow run runs it (``stream-orch run NEW.yaml --shadow``): the new version on
the live input, writing only ``.shadow`` topics.

Every rename of a shadow run happens here (and in the names :mod:`stream_orch.topology.naming`
derives from the topology's and the nodes' names), the way :func:`repartition.expand` splits
nodes: the runtime runs the result like any topology and needs nothing new.

- The topology is named ``<topology>.shadow``: its consumer groups (``<topology>.shadow.<node>``),
  transactional ids, state folders and member slots are its own, and its lineage headers say
  ``so.topology: <topology>.shadow``.
- Every topic a node routes to becomes ``<topic>.shadow``; a node reading a topic another node of
  the topology writes reads that topic's shadow (the new version's records, not the live ones).
- Each node's DLQ is ``<dlq>.shadow``, its retry tiers ``<input>.retry.<n>.shadow``, the
  changelogs of its tables ``<topology>.<table>.changelog.shadow``, repartition topics
  ``<topology>.<node>.repartition.shadow``: a shadow retries like the live version (so the two
  agree on records that succeed on a later attempt) without reading or writing live retries.
- Tables fed from a topic (global or not) read the live topic: they are inputs, read-only.
- A target outside Kafka (http, postgres) becomes the topic ``<topology>.<node>.<target>.shadow``
  (no schema: the event's fields as JSON, what the route would have handed the target): a shadow
  sends no request and writes no row.
"""

from __future__ import annotations

from collections.abc import Callable

from stream_orch.topology.models import (
    ErrorPolicy,
    JoinStep,
    NodeSpec,
    RouteEntry,
    RouteTarget,
    TopicSpec,
    TopologySpec,
)
from stream_orch.topology.models_delivery import external_targets
from stream_orch.topology.naming import SHADOW, dlq_topic, shadow_name

__all__ = ["SHADOW", "external_shadow_topic", "is_shadow", "shadow", "written_topics"]


def is_shadow(spec: TopologySpec) -> bool:
    return spec.topology.endswith(SHADOW)


def external_shadow_topic(topology: str, node: str, target: str) -> str:
    """Where a shadow run writes what ``node`` would have handed its external ``target``."""
    return shadow_name(f"{topology}.{node}.{target}")


def written_topics(spec: TopologySpec) -> set[str]:
    """The topics the nodes of ``spec`` route to (not their retries, DLQs or changelogs)."""
    return {t.topic for node in spec.nodes.values() for route in node.routes for t in route.targets()}


def shadow(spec: TopologySpec) -> TopologySpec:
    """``spec`` renamed for a shadow run (see the module's docstring); ``spec`` itself is left as it is."""
    if is_shadow(spec):
        return spec
    written = written_topics(spec)
    # declared: the topics read (live inputs, joined streams, table feeds) as they are, and the
    # shadows of the topics written and of declared DLQs; not the live outputs (never created)
    topics = {name: t for name, t in spec.topics.items() if _read(spec, name) and name not in written}
    for name in written:
        topics[shadow_name(name)] = spec.topics[name]
    for node in spec.nodes.values():
        if (dlq := dlq_topic(node)) in spec.topics:
            topics[shadow_name(dlq)] = spec.topics[dlq]
    for name, topic in spec.topics.items():
        if name in written and any(t.topic == name for t in spec.tables.values()):
            topics[name] = topic  # a table's feed another node writes: the table reads the live one

    def renamed(topic: str) -> str:
        return shadow_name(topic) if topic in written else topic

    nodes: dict[str, NodeSpec] = {}
    for name, node in spec.nodes.items():
        routes = [r.model_copy(update={"to": list(r.to)}) for r in node.routes]
        for route in routes:
            route.to = [_renamed_entry(entry, renamed) for entry in route.to]
        for target in external_targets(node):
            topic = external_shadow_topic(spec.topology, name, target.name)
            routes[target.route].to[target.position] = RouteTarget(topic=topic)
            source = spec.topics[node.input]
            topics[topic] = TopicSpec(
                partitions=source.partitions,
                replication=source.replication,
                description=f"shadow of node {name}'s target {target.name}",
            )
        steps = [
            s.model_copy(update={"topic": renamed(s.topic)}) if isinstance(s, JoinStep) else s
            for s in node.steps
        ]
        errors = ErrorPolicy(
            retry=node.errors.retry if node.errors else None, dlq=shadow_name(dlq_topic(node))
        )
        copy = node.model_copy(
            update={"input": renamed(node.input), "steps": steps, "routes": routes, "errors": errors}
        )
        copy._shadow = True
        nodes[name] = copy
    out = spec.model_copy(update={"topology": spec.topology + SHADOW, "topics": topics, "nodes": nodes})
    out._folder = spec._folder
    return out


def _read(spec: TopologySpec, topic: str) -> bool:
    return any(t.topic == topic for t in spec.tables.values()) or any(
        node.input == topic or any(isinstance(s, JoinStep) and s.topic == topic for s in node.steps)
        for node in spec.nodes.values()
    )


def _renamed_entry(entry: RouteEntry, renamed: Callable[[str], str]) -> RouteEntry:
    if isinstance(entry, str):
        return renamed(entry)
    if isinstance(entry, RouteTarget):
        return entry.model_copy(update={"topic": renamed(entry.topic)})
    return entry  # an external target: replaced by its topic afterwards
