"""The shadow transform (`run --shadow`): over every shipped topology, every topic a shadow run
writes (outputs, DLQs, retry tiers, changelogs, repartition topics, targets outside Kafka) ends in
`.shadow`, none is a topic of the live version, and the shadow reads the live inputs and table
feeds; and in the test driver a shadow of the fraud topology puts records in shadow topics only."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_orch.runtime.topic_plans import declared_topic_plans, derived_topic_plans, tables_written_by
from stream_orch.testing import TopologyTestDriver
from stream_orch.tools.generate import generate_fraud
from stream_orch.tools.shadow.plan import live_inputs, shadow_topics, version_plan
from stream_orch.topology.loader import load_topology
from stream_orch.topology.models import JoinStep, TopologySpec
from stream_orch.topology.models_delivery import external_targets
from stream_orch.topology.naming import changelog_topic, dlq_topic, group_id, retry_topics
from stream_orch.topology.repartition import expand
from stream_orch.topology.shadow import shadow, written_topics

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_767_225_600_000
SHIPPED = sorted(p for p in (ROOT / "topologies").glob("*.yaml") if not p.name.endswith(".cases.yaml"))


def writes(spec: TopologySpec) -> set[str]:
    """Every topic the engine writes when it runs ``spec`` (as expanded)."""
    found = set(written_topics(spec))
    found.update(n.input for n in spec.nodes.values() if n.schedule is not None)  # by the ticker
    for name, node in spec.nodes.items():
        found.update([dlq_topic(node), *retry_topics(node)])
        found.update(changelog_topic(spec.topology, t) for t in tables_written_by(spec, name))
    return found


def reads(spec: TopologySpec) -> set[str]:
    found = {t.topic for t in spec.tables.values() if t.topic}
    for node in spec.nodes.values():
        found.update([node.input, *retry_topics(node)])
        found.update(s.topic for s in node.steps if isinstance(s, JoinStep))
    return found


def test_the_shipped_topologies_cover_what_a_shadow_renames():
    specs = [load_topology(p).spec for p in SHIPPED]
    assert any(spec.tables and any(t.topic for t in spec.tables.values()) for spec in specs)
    assert any(external_targets(n) for spec in specs for n in spec.nodes.values())
    assert any(n.errors and n.errors.retry for spec in specs for n in spec.nodes.values())
    assert any(tables_written_by(spec, n) for spec in specs for n in spec.nodes)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_a_shadow_writes_only_shadow_topics_and_reads_the_live_inputs(path: Path):
    written = load_topology(path).spec
    live = expand(written)
    shade = expand(shadow(written))
    live_topics = writes(live) | reads(live)
    shadow_writes = writes(shade)
    assert shadow_writes, path
    assert all(t.endswith(".shadow") for t in shadow_writes), sorted(shadow_writes)
    assert not shadow_writes & live_topics
    # the live inputs (not written by the topology) and every table feed are read as they are
    assert set(live_inputs(live)) == set(live_inputs(shade))
    assert {t.topic for t in live.tables.values() if t.topic} == {
        t.topic for t in shade.tables.values() if t.topic
    }
    # what a shadow reads is live input or its own
    for topic in reads(shade):
        assert topic.endswith(".shadow") or topic in set(live_inputs(live)) | {
            t.topic for t in live.tables.values() if t.topic
        }, topic
    # its groups and its state are its own
    assert not {group_id(shade.topology, n) for n in shade.nodes} & {
        group_id(live.topology, n) for n in live.nodes
    }
    # the topics it makes sure of at start are shadow topics and those it reads
    created = {p.name for p in declared_topic_plans(shade) + derived_topic_plans(shade)}
    assert all(t.endswith(".shadow") or t in reads(shade) for t in created), sorted(created)
    # `shadow delete` finds every one of them
    assert shadow_writes <= set(shadow_topics(version_plan(written, as_shadow=True)))


def test_a_shadow_of_a_shadow_is_the_same():
    spec = load_topology(ROOT / "topologies" / "fraud_detection.yaml").spec
    assert shadow(shadow(spec)) == shadow(spec)


def test_external_targets_become_shadow_topics_of_the_node():
    spec = load_topology(ROOT / "topologies" / "orders_to_crm.yaml").spec
    shade = shadow(spec)
    for name, node in shade.nodes.items():
        assert not external_targets(node)
        for route in node.routes:
            for target in route.targets():
                assert target.topic.endswith(".shadow") and target.topic in shade.topics, name


def test_in_the_driver_a_fraud_shadow_fills_only_shadow_topics():
    spec = load_topology(ROOT / "topologies" / "fraud_detection.yaml").spec
    records, _plan = generate_fraud(40, 400, seed=3, start_ms=T0)
    with TopologyTestDriver(spec, schemas=ROOT / "schemas", start_ms=T0) as live:
        for r in records:
            if r.topic == "customers":
                live.pipe(r.topic, r.value, key=r.key)
        profiles = live.records("customers.clean")  # what the live version's table reads
    assert profiles
    with TopologyTestDriver(shadow(spec), schemas=ROOT / "schemas", start_ms=T0) as driver:
        for p in profiles:
            driver.pipe("customers.clean", p.raw_value, key=p.raw_key)
        for r in records:
            driver.pipe(r.topic, r.value, key=r.key)
        driver.advance(60)
        filled = {t for t in driver._logs.counts() if any(driver._logs.partitions(t))}
        enriched = driver.records("transactions.enriched.shadow")
    piped = {"customers", "transactions", "customers.clean"}
    assert filled - piped, "the shadow wrote nothing"
    assert all(t.endswith(".shadow") for t in filled - piped), sorted(filled - piped)
    assert {"fraud.review.shadow", "transactions.approved.shadow", "transactions.dlq.shadow"} <= filled
    assert len(enriched) > 300  # the live table's profiles were found
    assert {r.headers["so.topology"] for r in enriched} == {"fraud_detection.shadow"}


def test_in_the_driver_an_http_target_of_a_shadow_is_a_topic_and_no_request():
    spec = load_topology(ROOT / "topologies" / "orders_to_crm.yaml").spec
    with TopologyTestDriver(shadow(spec), schemas=ROOT / "schemas", start_ms=T0) as driver:
        for i, amount in enumerate([20, 150, 99.5, 100, 3000]):
            driver.pipe("orders", {"id": f"o{i}", "amount": amount})
        crm = driver.records("orders_to_crm.notify_crm.crm.shadow")
        seen = driver.records("orders.seen.shadow")
        sinks = [n.pipeline.sinks for n in driver.nodes.values()]
    assert sorted(r.value["id"] for r in crm) == ["o1", "o3", "o4"]  # what the CRM would have got
    assert len(seen) == 5
    assert sinks == [{}]  # no HTTP sink was built: nothing can be sent


def test_in_the_driver_a_shadow_retries_on_its_own_tiers():
    spec = load_topology(ROOT / "topologies" / "fraud_detection.yaml").spec
    txn = {"txn_id": "t1", "account_id": "A-1", "customer_id": 7, "amount": 10.0, "currency": "EUR",
           "merchant_id": "M-1", "channel": "online", "country": "DE", "ts": T0}  # fmt: skip
    profile = {"customer_id": "C-000007", "name": "N", "email": "n@example.com", "home_country": "DE",
               "risk_tier": "low", "avg_amount": 50.0}  # fmt: skip
    with TopologyTestDriver(shadow(spec), schemas=ROOT / "schemas", start_ms=T0) as driver:
        driver.pipe("transactions", txn)  # the profile is not in the (live) table yet: retried
        waiting = [r.topic for r in driver.pending_retries()]
        driver.pipe("customers.clean", profile)
        driver.advance(2)
        enriched = driver.records("transactions.enriched.shadow")
        filled = {t for t in driver._logs.counts() if any(driver._logs.partitions(t))}
    assert waiting == ["transactions.retry.1.shadow"]
    assert [r.value["txn_id"] for r in enriched] == ["t1"]
    assert not {t for t in filled if ".retry." in t and not t.endswith(".shadow")}


def test_a_repartitioned_node_and_a_chain_of_nodes_stay_inside_the_shadow():
    from test_repartition_step import doc

    data = doc()
    data["topics"]["hub.alerts"] = {"partitions": 3, "key": "hub"}
    data["nodes"]["alert"] = {  # reads what per_hub writes: in a shadow, per_hub's shadow
        "input": "hub.counts",
        "steps": [{"step": "filter", "when": "n > 3"}],
        "routes": [{"to": "hub.alerts"}],
        "errors": {"dlq": "hub.counts.dlq"},
    }
    spec = TopologySpec.model_validate(data)
    shade = expand(shadow(spec))
    assert shade.nodes["alert"].input == "hub.counts.shadow"
    assert shade.nodes["per_hub"].routes[0].targets()[0].topic == "rekey.per_hub.repartition.shadow"
    assert shade.nodes["per_hub.after_repartition"].input == "rekey.per_hub.repartition.shadow"
    assert changelog_topic(shade.topology, "per_hub") == "rekey.per_hub.changelog.shadow"
    assert all(t.endswith(".shadow") for t in writes(shade)), sorted(writes(shade))
    assert live_inputs(shade) == ["scans"]
