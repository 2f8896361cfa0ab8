"""Names in a topology: the rules for the names it gives, and the names the engine derives from
them (retry, dead-letter and changelog topics, consumer groups).

The rules are pydantic constraints (:data:`Name`, :data:`TopicName`) used by the models, so the
loader checks them, the JSON Schema shows them and the reference docs list them. Lint, the graph
drawing, the runtime and the DLQ tools use the derived names, so a name is decided once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

if TYPE_CHECKING:
    from stream_orch.topology.models import NodeSpec

#: Topology, node and table names become parts of topic names (`<topology>.<table>.changelog`),
#: consumer groups, transactional ids and the state folder's paths: no `/`, no leading `.`
#: (so never `..`), and short enough that every name derived from them is a legal topic name.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
NAME_MAX = 100
NAME_RULE = (
    "names have letters, digits, `.`, `_` and `-`, start with a letter or digit and have at most "
    f"{NAME_MAX} characters"
)
#: Kafka's rule for topic names; `[^.]`, `.[^.]` or `..x` first is "not `.` or `..`" without a
#: look-ahead (pydantic's regex engine has none).
TOPIC_PATTERN = r"^(?:[A-Za-z0-9_-]|\.[A-Za-z0-9_-]|\.\.[A-Za-z0-9._-])[A-Za-z0-9._-]*$"
TOPIC_MAX = 249
TOPIC_RULE = (
    f"topic names have letters, digits, `.`, `_` and `-` (Kafka's rule), at most {TOPIC_MAX} "
    "characters, and are not `.` or `..`"
)

Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=NAME_MAX)]
TopicName = Annotated[str, Field(pattern=TOPIC_PATTERN, max_length=TOPIC_MAX)]


def name_rule(constraint: str | int) -> tuple[str, str] | None:
    """(what, rule) of the name type whose pattern or maximum length is ``constraint``, for the
    loader's messages ("`x/y` is not a valid topic name")."""
    if constraint in (NAME_PATTERN, NAME_MAX):
        return "name", NAME_RULE
    if constraint in (TOPIC_PATTERN, TOPIC_MAX):
        return "topic name", TOPIC_RULE
    return None


#: What a shadow run (`stream-orch run --shadow`, :mod:`stream_orch.topology.shadow`) adds to the
#: end of every topic it writes and to its topology's name (so to its consumer groups, transactional
#: ids and state folders).
SHADOW = ".shadow"


def shadow_name(name: str) -> str:
    """``name`` with :data:`SHADOW` at its end (unchanged when it has it already)."""
    return name if name.endswith(SHADOW) else name + SHADOW


def _base_and_suffix(topology: str) -> tuple[str, str]:
    """A shadow topology's names put the suffix last, so that every topic it writes ends in it."""
    if topology.endswith(SHADOW):
        return topology[: -len(SHADOW)], SHADOW
    return topology, ""


def retry_topic(input_topic: str, tier: int, suffix: str = "") -> str:
    return f"{input_topic}.retry.{tier}{suffix}"


def node_retry_topic(node: NodeSpec, tier: int) -> str:
    """The topic of a node's retry tier ``tier`` (1..): ``<input>.retry.<n>``, ``.shadow`` after it
    in a shadow run (whose input is the live one: the shadow never reads or writes live retries)."""
    return retry_topic(node.input, tier, SHADOW if node._shadow else "")


def retry_topics(node: NodeSpec) -> list[str]:
    if node.errors is None or node.errors.retry is None:
        return []
    return [node_retry_topic(node, n) for n in range(1, len(node.errors.retry.delays) + 1)]


def dlq_topic(node: NodeSpec) -> str:
    if node.errors is not None and node.errors.dlq:
        return node.errors.dlq
    return f"{node.input}.dlq"


def derived_topics(node: NodeSpec) -> list[str]:
    """The topics a node's `errors` imply: its retry tiers and its dead-letter topic."""
    return [*retry_topics(node), dlq_topic(node)]


def changelog_topic(topology: str, table: str) -> str:
    base, suffix = _base_and_suffix(topology)
    return f"{base}.{table}.changelog{suffix}"


def group_id(topology: str, node: str) -> str:
    return f"{topology}.{node}"


def repartition_topic(topology: str, node: str, part: int = 1) -> str:
    """The internal topic a node's ``repartition`` step writes (``part``: its n-th one)."""
    base, suffix = _base_and_suffix(topology)
    return f"{base}.{node}.repartition" + (f"_{part}" if part > 1 else "") + suffix


def after_repartition(node: str, part: int = 1) -> str:
    """The name of the part of ``node`` after its ``part``-th ``repartition`` step."""
    return f"{node}.after_repartition" + (f"_{part}" if part > 1 else "")


def ticks_topic(topology: str, node: str) -> str:
    """The internal one-partition topic a scheduled node reads its tick records from (a shadow
    run's own: its ticker writes it)."""
    base, suffix = _base_and_suffix(topology)
    return f"{base}.{node}.ticks{suffix}"


def ticks_table(node: str) -> str:
    """The internal table where a scheduled node keeps the last tick it fired."""
    return f"{node}.ticks"


#: Where in a node a record was dead-lettered, besides its steps: the values of the ``step``
#: label of ``dead_lettered_total`` (a bounded set: these and one per step of the node).
DECODE_STAGE, ROUTE_STAGE, DELIVER_STAGE = "decode", "route", "deliver"


def step_labels(node: NodeSpec) -> list[str]:
    """The ``step`` label of each of ``node``'s steps: its place (from 1) and kind, ``2.validate``."""
    return [f"{i}.{step.step}" for i, step in enumerate(node.steps, 1)]
