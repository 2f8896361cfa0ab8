"""A node with ``repartition`` steps, split into the nodes the engine runs (the way Kafka Streams
splits its topology into sub-topologies at a repartition topic).

The part before a ``repartition: {by: F}`` step keeps the node's name, input and state steps
before it, and routes every record to the internal topic ``<topology>.<node>.repartition``
(keyed by F, JSON of the record's fields at that point, no schema). The part after it,
``<node>.after_repartition``, reads that topic with the remaining steps, the routes and the error
policy; its dead letters go to the node's DLQ. So the runtime needs nothing new: the first part
is a re-keying writer like any other, and the per-source watermarks of
:mod:`stream_orch.steps.source_watermarks` apply to the second part's event-time steps.

Lint and ``validate`` read the topology as written (their lines are the file's); whatever runs
it or draws it (the worker, the test driver, ``graph``, the DLQ tools) reads :func:`expand`'s.
"""

from __future__ import annotations

from stream_orch.topology.models import ErrorPolicy, NodeSpec, RouteSpec, TopicSpec, TopologySpec
from stream_orch.topology.models_flow import RepartitionStep
from stream_orch.topology.naming import after_repartition, dlq_topic, repartition_topic
from stream_orch.topology.schedule_expand import expand_schedules

__all__ = ["expand", "node_parts", "repartition_labels"]


def expand(spec: TopologySpec) -> TopologySpec:
    """``spec`` with every node that has ``repartition`` steps split at them, and every scheduled
    node reading its ticks (:mod:`~stream_orch.topology.schedule_expand`); ``spec`` itself when
    there is neither."""
    spec = expand_schedules(spec)
    if not any(isinstance(s, RepartitionStep) for node in spec.nodes.values() for s in node.steps):
        return spec
    topics = dict(spec.topics)
    nodes: dict[str, NodeSpec] = {}
    for name, node in spec.nodes.items():
        cuts = [i for i, s in enumerate(node.steps) if isinstance(s, RepartitionStep)]
        if not cuts:
            nodes[name] = node
            continue
        # the second part on: the node's DLQ by name (its default is named after the first input)
        errors = ErrorPolicy(retry=node.errors.retry if node.errors else None, dlq=dlq_topic(node))
        partitions = spec.topics[node.input].partitions if node.input in spec.topics else 1
        replication = spec.topics[node.input].replication if node.input in spec.topics else None
        part_name, part_input, start = name, node.input, 0
        for part, cut in enumerate(cuts, start=1):
            step = node.steps[cut]
            assert isinstance(step, RepartitionStep)
            internal = repartition_topic(spec.topology, name, part)
            partitions = step.partitions or partitions
            topics[internal] = TopicSpec(
                partitions=partitions,
                replication=replication,
                key=step.by,
                description=f"internal: node {name} re-keyed by {step.by}",
            )
            nodes[part_name] = node.model_copy(
                update={
                    "input": part_input,
                    "steps": node.steps[start:cut],
                    "routes": [RouteSpec(to=[internal])],
                    "errors": node.errors if start == 0 else errors,
                }
            )
            part_name, part_input, start = after_repartition(name, part), internal, cut + 1
        nodes[part_name] = node.model_copy(
            update={"input": part_input, "steps": node.steps[start:], "errors": errors}
        )
    return spec.model_copy(update={"topics": topics, "nodes": nodes})


def node_parts(spec: TopologySpec, name: str) -> list[str]:
    """The nodes of the expanded topology that ``name`` of the written one runs as."""
    node = spec.nodes.get(name)
    cuts = sum(isinstance(s, RepartitionStep) for s in node.steps) if node is not None else 0
    return [name, *(after_repartition(name, part) for part in range(1, cuts + 1))]


def repartition_labels(spec: TopologySpec) -> dict[str, str]:
    """Internal topic -> ``repartition by <field>``, for drawings of the expanded topology."""
    out = {}
    for name, node in spec.nodes.items():
        steps = [s for s in node.steps if isinstance(s, RepartitionStep)]
        for part, step in enumerate(steps, start=1):
            out[repartition_topic(spec.topology, name, part)] = f"repartition by {step.by}"
    return out
