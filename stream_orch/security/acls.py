"""The exact Kafka ACLs a worker of a topology needs (``stream-orch acl plan``), and nothing else.

Computed from the topology as the engine runs it (:func:`~stream_orch.topology.repartition.expand`:
repartition parts and schedule ticks included) and from the topics the worker reconciles at start
(:func:`~stream_orch.runtime.topic_plans.declared_topic_plans` and ``derived_topic_plans``, so the plan
and the worker cannot disagree on a derived name):

- every topic the worker reconciles: DESCRIBE_CONFIGS (it checks their cleanup policy) and
  DESCRIBE (implied by READ or WRITE where it has those); CREATE only when asked
  (``--create-topics``), on those topics by name;
- READ: node inputs (retry tiers included), the topics of the tables it reads, its changelogs
  (restored at start);
- WRITE: route outputs, retry tiers, dead-letter topics, changelogs, repartition topics (records
  and watermarks), the ticks of a scheduled node, and the audit topic; READ on the audit topic
  too when the worker hears reload announcements (``run`` does);
- GROUP READ on each node's consumer group (its commits and the lag view);
- TRANSACTIONAL_ID WRITE on each node's id prefix under ``processing: exactly_once``.

Idempotent producers need no cluster ACL: since Kafka 3.0 WRITE on a topic allows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from stream_orch.runtime.topic_plans import (
    declared_topic_plans,
    derived_topic_plans,
    tables_read_by,
    tables_written_by,
)
from stream_orch.runtime.transactions import transactional_id
from stream_orch.topology.models import TopologySpec
from stream_orch.topology.naming import changelog_topic, dlq_topic, group_id, retry_topics
from stream_orch.topology.repartition import expand

Resource = Literal["TOPIC", "GROUP", "TRANSACTIONAL_ID"]
Pattern = Literal["LITERAL", "PREFIXED"]
Operation = Literal["READ", "WRITE", "CREATE", "DESCRIBE", "DESCRIBE_CONFIGS"]

#: Kafka's wire codes (org.apache.kafka.common.resource.ResourceType, PatternType, acl.AclOperation)
RESOURCE_CODES: dict[str, int] = {"TOPIC": 2, "GROUP": 3, "TRANSACTIONAL_ID": 5}
PATTERN_CODES: dict[str, int] = {"LITERAL": 3, "PREFIXED": 4}
OPERATION_CODES: dict[str, int] = {"READ": 3, "WRITE": 4, "CREATE": 5, "DESCRIBE": 8, "DESCRIBE_CONFIGS": 10}
_ORDER = {"TOPIC": 0, "GROUP": 1, "TRANSACTIONAL_ID": 2}


@dataclass(frozen=True)
class Acl:
    """One ALLOW binding for the plan's principal, from any host."""

    resource: Resource
    name: str
    operation: Operation
    pattern: Pattern = "LITERAL"

    def describe(self, principal: str) -> str:
        name = f"{self.name}*" if self.pattern == "PREFIXED" else self.name
        return f"{principal} ALLOW {self.operation} {self.resource} {name}"

    def codes(self, principal: str) -> tuple[int, str, int, str, int]:
        return (
            RESOURCE_CODES[self.resource],
            self.name,
            PATTERN_CODES[self.pattern],
            principal,
            OPERATION_CODES[self.operation],
        )


def principal_of(user: str) -> str:
    return user if user.startswith("User:") else f"User:{user}"


def plan_acls(
    spec: TopologySpec,
    *,
    audit_topic: str | None = "stream_orch.audit",
    hears_reloads: bool = True,
    create_topics: bool = False,
) -> list[Acl]:
    """The ACLs of a worker running every node of ``spec`` (as written: it is expanded here).
    ``audit_topic``: None when auditing is off."""
    run = expand(spec)
    ops: dict[str, set[Operation]] = {}

    def grant(topic: str, *operations: Operation) -> None:
        ops.setdefault(topic, set()).update(operations)

    for plan in declared_topic_plans(run) + derived_topic_plans(run):
        grant(plan.name, "DESCRIBE_CONFIGS", *(("CREATE",) if create_topics else ()))
    groups: list[str] = []
    txn_prefixes: list[str] = []
    for name, node in run.nodes.items():
        grant(node.input, "READ")
        if node.schedule is not None:
            grant(node.input, "WRITE")  # the worker writes its own ticks
        for topic in retry_topics(node):
            grant(topic, "READ", "WRITE")
        grant(dlq_topic(node), "WRITE")
        for route in node.routes:
            for target in route.targets():
                grant(target.topic, "WRITE")
        for table in tables_written_by(run, name):
            grant(changelog_topic(run.topology, table), "READ", "WRITE")
        for table in tables_read_by(run, name):
            if (topic := run.tables[table].topic) is not None:
                grant(topic, "READ")
        groups.append(group_id(run.topology, name))
        if run.processing == "exactly_once":
            # the ids are <prefix><input partition>: one prefix per node covers every partition
            txn_prefixes.append(transactional_id(run.topology, name, 0).removesuffix("0"))
    if audit_topic is not None:
        grant(audit_topic, "WRITE", *(("READ",) if hears_reloads else ()))
        if create_topics:
            grant(audit_topic, "CREATE")
    acls: list[Acl] = []
    for topic, wanted in ops.items():
        if not wanted & {"READ", "WRITE"}:
            wanted = wanted | {"DESCRIBE"}  # READ and WRITE imply it
        acls += [Acl("TOPIC", topic, op) for op in wanted]
    acls += [Acl("GROUP", g, "READ") for g in groups]
    acls += [Acl("TRANSACTIONAL_ID", p, "WRITE", "PREFIXED") for p in txn_prefixes]
    return sorted(set(acls), key=lambda a: (_ORDER[a.resource], a.name, a.operation))
