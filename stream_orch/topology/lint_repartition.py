"""Lint of ``repartition`` steps: the field exists where the step is, the names the split gives
(:mod:`stream_orch.topology.repartition`) are free, and the steps after it are checked against the
internal topic (keyed by the field) rather than the node's input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from stream_orch.topology.models import NodeSpec, TopologySpec
from stream_orch.topology.models_flow import RepartitionStep
from stream_orch.topology.naming import after_repartition, repartition_topic
from stream_orch.topology.problems import Severity
from stream_orch.topology.repartition import expand

PathTuple = tuple[str | int, ...]
Add = Callable[[PathTuple, str, str, Severity], None]


class _FieldCheck(Protocol):
    def _field(self, path: PathTuple, name: str, avail: set[str] | None, what: str) -> None: ...


def with_internal_topics(spec: TopologySpec) -> TopologySpec:
    """``spec`` as written, with the internal topics of its repartition steps declared (so the
    checks of the steps after one see the topic they read)."""
    expanded = expand(spec)
    return spec if expanded is spec else spec.model_copy(update={"topics": expanded.topics})


def after_step(
    linter: _FieldCheck,
    topology: str,
    name: str,
    node: NodeSpec,
    index: int,
    avail: set[str] | None,
) -> NodeSpec:
    """Check the repartition step at ``index``; the node as the steps after it see it (reading
    the internal topic)."""
    step = node.steps[index]
    assert isinstance(step, RepartitionStep)
    linter._field(("nodes", name, "steps", index, "by"), step.by, avail, f"node `{name}`, step repartition")
    part = sum(isinstance(s, RepartitionStep) for s in node.steps[: index + 1])
    return node.model_copy(update={"input": repartition_topic(topology, name, part)})


def name_clashes(spec: TopologySpec, add: Add) -> None:
    """A node or topic named like a part or internal topic the split would add."""
    for name, node in spec.nodes.items():
        for i, step in enumerate(node.steps):
            if not isinstance(step, RepartitionStep):
                continue
            part = sum(isinstance(s, RepartitionStep) for s in node.steps[: i + 1])
            path: PathTuple = ("nodes", name, "steps", i)
            if after_repartition(name, part) in spec.nodes:
                add(
                    path,
                    f"node `{name}`, step repartition: the part after it runs as node "
                    f"`{after_repartition(name, part)}`, which the topology already has",
                    "rename that node",
                    "error",
                )
            topic = repartition_topic(spec.topology, name, part)
            if topic in spec.topics:
                add(
                    path,
                    f"node `{name}`, step repartition: its internal topic `{topic}` is declared "
                    "under `topics:`",
                    "remove the declaration (the engine creates the topic), or rename the node",
                    "error",
                )
