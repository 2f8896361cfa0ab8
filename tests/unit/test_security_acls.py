"""The ACL plan of `stream-orch acl plan`: the exact set for the fraud topology (worked out by hand
from its YAML), and for every shipped topology the least-privilege rules."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from stream_orch.runtime.topic_plans import declared_topic_plans, derived_topic_plans
from stream_orch.security.acls import Acl, plan_acls, principal_of
from stream_orch.topology.loader import load_topology
from stream_orch.topology.naming import group_id
from stream_orch.topology.repartition import expand
from stream_orch.transport.security_admin import salted_password

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "topologies").glob("*.yaml"))
SHIPPED = [p for p in SHIPPED if not p.name.endswith(".cases.yaml")]


def _fraud_expected() -> set[tuple[str, str, str]]:
    out: set[tuple[str, str, str]] = set()
    declared = ["transactions", "customers", "customers.clean", "transactions.enriched", "fraud.alerts",
                "account.actions", "fraud.review", "transactions.approved"]  # fmt: skip
    retries = [f"transactions.retry.{n}" for n in (1, 2, 3)]
    changelogs = ["fraud_detection.seen_txns.changelog", "fraud_detection.account_velocity.changelog"]
    dlqs = ["customers.dlq", "transactions.dlq"]
    for topic in declared + retries + changelogs + dlqs:
        out.add(("TOPIC", topic, "DESCRIBE_CONFIGS"))
    for topic in ["transactions", "customers", "customers.clean", *retries, *changelogs, "stream_orch.audit"]:
        out.add(("TOPIC", topic, "READ"))
    outputs = ["transactions.enriched", "fraud.alerts", "account.actions", "fraud.review"]
    outputs.append("transactions.approved")
    for topic in ["customers.clean", *outputs, *retries, *changelogs, *dlqs, "stream_orch.audit"]:
        out.add(("TOPIC", topic, "WRITE"))
    for node in ("harmonise_customers", "score_transactions"):
        out.add(("GROUP", f"fraud_detection.{node}", "READ"))
        out.add(("TRANSACTIONAL_ID", f"stream-orch.fraud_detection.{node}.", "WRITE"))
    return out


def test_fraud_plan_is_exactly_what_its_worker_needs() -> None:
    spec = load_topology(REPO / "topologies" / "fraud_detection.yaml").spec
    acls = plan_acls(spec)
    assert {(a.resource, a.name, a.operation) for a in acls} == _fraud_expected()
    assert len(acls) == len(_fraud_expected())  # no duplicates
    assert {a.pattern for a in acls if a.resource == "TRANSACTIONAL_ID"} == {"PREFIXED"}
    assert {a.pattern for a in acls if a.resource != "TRANSACTIONAL_ID"} == {"LITERAL"}


def test_create_only_when_asked_and_only_on_its_topics() -> None:
    spec = load_topology(REPO / "topologies" / "fraud_detection.yaml").spec
    created = {a.name for a in plan_acls(spec, create_topics=True) if a.operation == "CREATE"}
    worker_topics = {p.name for p in declared_topic_plans(spec) + derived_topic_plans(spec)}
    assert created == worker_topics | {"stream_orch.audit"}
    assert not [a for a in plan_acls(spec) if a.operation == "CREATE"]


def test_audit_off_and_no_reloads() -> None:
    spec = load_topology(REPO / "topologies" / "fraud_detection.yaml").spec
    assert not [a for a in plan_acls(spec, audit_topic=None) if a.name == "stream_orch.audit"]
    heard = {
        a.operation
        for a in plan_acls(spec, audit_topic="audit.x", hears_reloads=False)
        if a.name == "audit.x"
    }
    assert heard == {"WRITE"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_topology_gets_least_privilege(path: Path) -> None:
    spec = load_topology(path).spec
    run = expand(spec)
    acls = plan_acls(spec)
    topics = {p.name for p in declared_topic_plans(run) + derived_topic_plans(run)} | {"stream_orch.audit"}
    ops = {(a.resource, a.name, a.operation) for a in acls}
    assert {a.name for a in acls if a.resource == "TOPIC"} <= topics  # nothing outside its topics
    assert {a.operation for a in acls} <= {"READ", "WRITE", "DESCRIBE", "DESCRIBE_CONFIGS"}
    assert not [
        a for a in acls if a.name in ("*", "") or a.resource not in ("TOPIC", "GROUP", "TRANSACTIONAL_ID")
    ]
    for name, node in run.nodes.items():
        assert ("TOPIC", node.input, "READ") in ops
        assert ("GROUP", group_id(run.topology, name), "READ") in ops
        for route in node.routes:
            for target in route.targets():
                assert ("TOPIC", target.topic, "WRITE") in ops
    groups = {a.name for a in acls if a.resource == "GROUP"}
    assert groups == {group_id(run.topology, n) for n in run.nodes}
    has_txn = any(a.resource == "TRANSACTIONAL_ID" for a in acls)
    assert has_txn == (run.processing == "exactly_once")
    for topic in topics - {"stream_orch.audit"}:  # the worker checks every topic's cleanup policy
        assert ("TOPIC", topic, "DESCRIBE_CONFIGS") in ops


def test_acl_lines_and_wire_codes() -> None:
    acl = Acl("TRANSACTIONAL_ID", "stream-orch.t.n.", "WRITE", "PREFIXED")
    assert acl.describe(principal_of("bob")) == "User:bob ALLOW WRITE TRANSACTIONAL_ID stream-orch.t.n.*"
    assert acl.codes("User:bob") == (5, "stream-orch.t.n.", 4, "User:bob", 4)
    assert principal_of("User:bob") == "User:bob"


def test_scram_salted_password_is_rfc5802_hi() -> None:
    # Hi(): U1 = HMAC(p, salt || INT(1)), Ui = HMAC(p, Ui-1), result = U1 xor ... xor Ui
    import hmac

    password, salt, rounds = b"pw", b"salt", 3
    u = hmac.new(password, salt + b"\x00\x00\x00\x01", hashlib.sha512).digest()
    result = bytearray(u)
    for _ in range(rounds - 1):
        u = hmac.new(password, u, hashlib.sha512).digest()
        result = bytearray(x ^ y for x, y in zip(result, u, strict=True))
    assert salted_password("pw", salt, rounds, "SCRAM-SHA-512") == bytes(result)


def test_a_scheduled_node_writes_and_reads_its_ticks() -> None:
    spec = load_topology(REPO / "examples" / "reorder" / "reorder.yaml").spec
    ops = {(a.resource, a.name, a.operation) for a in plan_acls(spec)}
    ticks = "reorder.reorder_below_threshold.ticks"
    assert {("TOPIC", ticks, "READ"), ("TOPIC", ticks, "WRITE")} <= ops
    assert ("TOPIC", "stock.levels", "READ") in ops  # the table it scans, read from its topic
    assert ("TOPIC", "stock.levels", "WRITE") not in ops
