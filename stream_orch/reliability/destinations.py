"""Where ``dlq replay --to original`` may write: the topics the dead letters of one DLQ can have
come from, never what a dead letter's ``so.error.topic`` header says on its own.

Anyone who can write to a DLQ can forge that header, so it only *chooses* among the allowed
origins: the input, retry and joined topics of the topology's nodes that dead-letter into this
DLQ (``--topology``), or, without a topology, the input the DLQ's default name ``<input>.dlq``
comes from. A dead letter naming any other topic is skipped and counted, not written.
``--to TOPIC`` is the operator's explicit choice and is not checked against the origins.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from stream_orch.errors import UserError
from stream_orch.topology.models import JoinStep, TopologySpec
from stream_orch.topology.naming import dlq_topic, retry_topics

# Kafka's rule for topic names: what a forged header names is shown only if it could be a topic.
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
# Distinct refused origins kept by name; the rest are counted together (the header is untrusted:
# a DLQ full of distinct forged names must not grow the report).
MAX_REFUSED_NAMES = 20
OTHERS = "(other topics)"
NOT_A_TOPIC = "(not a topic name)"


def topology_origins(spec: TopologySpec, dlq: str) -> frozenset[str]:
    """The topics whose records the nodes of ``spec`` dead-letter into ``dlq``: each such node's
    input, its retry topics and the streams it joins."""
    origins: set[str] = set()
    for node in spec.nodes.values():
        if dlq_topic(node) == dlq:
            joined = [step.topic for step in node.steps if isinstance(step, JoinStep)]
            origins.update([node.input, *retry_topics(node), *joined])
    if not origins:
        dlqs = sorted({dlq_topic(node) for node in spec.nodes.values()})
        raise UserError(
            f"{dlq} is not a dead-letter topic of topology {spec.topology} (its dead-letter topics: "
            f"{', '.join(dlqs)})"
        )
    return frozenset(origins - {dlq})


def name_origins(dlq: str) -> frozenset[str]:
    """Without a topology: the input that the default DLQ name ``<input>.dlq`` belongs to."""
    if dlq.endswith(".dlq") and len(dlq) > len(".dlq"):
        return frozenset({dlq.removesuffix(".dlq")})
    raise UserError(
        f"--to original: cannot tell which topics the dead letters of {dlq} come from; give the "
        "topology (--topology FILE: its input and retry topics) or a target (--to TOPIC)"
    )


def shown(origin: str) -> str:
    """An untrusted origin as it may appear in a report: a topic name, or a placeholder."""
    return origin if _TOPIC_NAME.match(origin) else NOT_A_TOPIC


def count_refused(refused: Counter[str], origin: str) -> None:
    name = shown(origin)
    if name in refused or len(refused) < MAX_REFUSED_NAMES:
        refused[name] += 1
    else:
        refused[OTHERS] += 1


def plan_lines(
    dlq: str, by_target: Counter[str], refused: Counter[str], origins: Iterable[str] | None, dry_run: bool
) -> list[str]:
    """What a replay says before it writes: one line per target topic with its count, and one for
    the dead letters it skips because their origin is not allowed."""
    verb = "would replay" if dry_run else "replaying"
    lines = [f"{verb} {n} dead letters of {dlq} to {target}" for target, n in sorted(by_target.items())]
    if not by_target:
        lines.append(f"nothing to replay from {dlq}")
    if refused:
        names = ", ".join(f"{name} ({n})" for name, n in refused.most_common())
        allowed = ", ".join(sorted(origins or ()))
        lines.append(
            f"skipping {sum(refused.values())} dead letters of {dlq} whose so.error.topic is not one "
            f"of {allowed}: {names}"
        )
    return lines
