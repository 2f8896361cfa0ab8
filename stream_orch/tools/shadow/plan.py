"""What a shadow run reads and writes, from the two topologies: the live inputs it compares on,
the topics and groups of each version (for the report, the start offsets and ``shadow delete``)."""

from __future__ import annotations

from dataclasses import dataclass

from stream_orch.runtime.topic_plans import tables_written_by
from stream_orch.topology.models import JoinStep, MaskStep, ScoreStep, TopologySpec
from stream_orch.topology.naming import SHADOW, changelog_topic, dlq_topic, group_id, retry_topics
from stream_orch.topology.repartition import expand
from stream_orch.topology.shadow import shadow, written_topics


def live_inputs(spec: TopologySpec) -> list[str]:
    """Topics the nodes read that no node of ``spec`` writes: the input both versions share (not a
    scheduled node's ticks topic: each version's ticker writes its own)."""
    written = written_topics(spec)
    found: list[str] = []
    for node in spec.nodes.values():
        inputs = [] if node.schedule is not None else [node.input]
        for topic in [*inputs, *(s.topic for s in node.steps if isinstance(s, JoinStep))]:
            if topic not in written and topic not in found:
                found.append(topic)
    return found


@dataclass(frozen=True)
class VersionPlan:
    """One version as the report and the tools see it (``spec``: as the engine runs it)."""

    spec: TopologySpec
    outputs: list[str]  # the topics its routes write
    dlqs: list[str]
    conditional: set[str]  # topics of routes with `when` or `otherwise` (live names)
    score_fields: list[str]
    masked: frozenset[str]

    @property
    def groups(self) -> dict[str, str]:
        """Consumer group -> the node's input."""
        return {group_id(self.spec.topology, n): node.input for n, node in self.spec.nodes.items()}

    def reading(self, inputs: list[str]) -> dict[str, list[str]]:
        """Node -> the topics of ``inputs`` it reads (its input, joined streams)."""
        found = {}
        for name, node in self.spec.nodes.items():
            read = [node.input, *(s.topic for s in node.steps if isinstance(s, JoinStep))]
            if mine := [t for t in read if t in inputs]:
                found[name] = mine
        return found


def version_plan(written: TopologySpec, *, as_shadow: bool) -> VersionPlan:
    """The plan of ``written`` (a topology as its file says) run live, or as a shadow run."""
    conditional = {
        t.topic
        for node in written.nodes.values()
        for r in node.routes
        if r.when is not None or r.otherwise
        for t in r.targets()
    }
    steps = [s for node in written.nodes.values() for s in node.steps]
    spec = expand(shadow(written) if as_shadow else written)
    return VersionPlan(
        spec=spec,
        outputs=sorted(written_topics(spec)),
        dlqs=sorted({dlq_topic(node) for node in spec.nodes.values()}),
        conditional=conditional,
        score_fields=list(dict.fromkeys(s.as_ for s in steps if isinstance(s, ScoreStep))),
        masked=frozenset(f for s in steps if isinstance(s, MaskStep) for f in s.fields),
    )


def live_name(topic: str) -> str:
    """A shadow topic's live name (``fraud.review.shadow`` -> ``fraud.review``)."""
    return topic.removesuffix(SHADOW)


def shadow_topics(plan: VersionPlan) -> list[str]:
    """Every topic a shadow run of ``plan`` may have created (all end in ``.shadow``)."""
    spec = plan.spec
    found = set(plan.outputs) | set(plan.dlqs)
    for name, node in spec.nodes.items():
        found.update(retry_topics(node))
        found.update(changelog_topic(spec.topology, table) for table in tables_written_by(spec, name))
    found.update(t for t in spec.topics if t.endswith(SHADOW))
    return sorted(t for t in found if t.endswith(SHADOW))
