"""Shadow runs on the real broker (issue 23 item 2): the fraud topology runs live, a copy with a
changed score weight runs as a shadow (`run --shadow --from-time`) on the same input; the report's
moves between routes equal the moves of the two versions run through the test driver on the same
generated input; the shadow writes nothing to the live topics (counts and lineage read back);
`--from-time` starts at the given time (records produced before it are not seen); `shadow delete`
removes the shadow's groups and topics."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from ruamel.yaml import YAML

from stream_orch.reliability import headers as H
from stream_orch.testing import TopologyTestDriver
from stream_orch.tools.generate import Shares, generate_fraud
from stream_orch.transport.metadata import wait_for_metadata
from tests import reliability_harness as rh
from tests.kafka_helpers import run_cli
from tests.topology_harness import BOOTSTRAP, FRAUD_OUTPUTS, wait_for_group

pytestmark = pytest.mark.integration

CONDITIONAL = ["fraud.alerts", "account.actions", "fraud.review", "transactions.approved"]
QUIET = Shares(late_profiles=0.0)  # no retries: a late profile's route would depend on timing


def changed_copy(live: Path, out_dir: Path) -> Path:
    """``live`` with the foreign_country rule's weight 0.2 -> 0.45 (the same topology, a new version)."""
    yaml = YAML()
    doc = yaml.load(live.read_text())
    doc["version"] = "1.1.0"
    score = next(s for s in doc["nodes"]["score_transactions"]["steps"] if s["step"] == "score")
    rule = next(r for r in score["rules"] if r["name"] == "foreign_country")
    rule["weight"] = 0.45
    # the model file stays where the copied file's folder (or its python_paths) has it
    doc["python_paths"] = [str(live.parent.resolve()), *(doc.get("python_paths") or [])]
    out_dir.mkdir()
    path = out_dir / live.name
    with path.open("w") as fh:
        yaml.dump(doc, fh)
    return path


async def produce(records: list[Any], names: dict[str, str]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", linger_ms=5)
    await producer.start()
    try:
        for r in records:
            await producer.send(names[r.topic], r.value, key=r.key)
        await producer.flush()
    finally:
        await producer.stop()


async def wait_done(group: str, topic: str, timeout: float = 120.0) -> None:
    """Until ``group`` has committed the end of every partition of ``topic``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    reader = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP)
    await reader.start()
    try:
        found = await wait_for_metadata(reader, [topic], timeout_s=20)
        parts = [TopicPartition(topic, p) for p in sorted(found[topic])]
        assert parts, topic
        end = await reader.end_offsets(parts)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            committed = await admin.list_consumer_group_offsets(group)
            if all(committed.get(tp) is not None and committed[tp].offset >= end[tp] for tp in parts):
                return
            await asyncio.sleep(0.5)
        raise AssertionError(f"{group} did not finish {topic} within {timeout}s")
    finally:
        await reader.stop()
        await admin.close()


async def read_all(topics: list[str]) -> dict[str, list[Any]]:
    async with rh.Watcher(topics) as watch:
        await watch.poll(3.0)
    return watch.records


def label(topics: set[str]) -> str:
    if "transactions.dlq" in topics or "customers.dlq" in topics:
        return "dlq"
    return "+".join(sorted(topics & set(CONDITIONAL) or topics))


def driver_routes(path: Path, records: list[Any]) -> dict[tuple[str, int, int], str]:
    """Each input's route in the test driver, by its lineage (topic, partition, offset)."""
    routes: dict[tuple[str, int, int], set[str]] = {}
    with TopologyTestDriver(path, schemas=rh.REPO / "schemas") as driver:
        for r in records:
            driver.pipe(r.topic, r.value, key=r.key)
        for topic in [*FRAUD_OUTPUTS, "customers.clean", "customers.dlq"]:
            for out in driver.records(topic):
                h = out.headers
                if topic.endswith(".dlq"):
                    source = (h[H.ERROR_TOPIC], int(h[H.ERROR_PARTITION]), int(h[H.ERROR_OFFSET]))
                else:
                    source = (h[H.SRC_TOPIC], int(h[H.SRC_PARTITION]), int(h[H.SRC_OFFSET]))
                if source[0] in ("transactions", "customers"):  # the live inputs
                    routes.setdefault(source, set()).add(topic)
    return {source: label(topics) for source, topics in routes.items()}


async def test_a_shadow_report_equals_the_drivers_moves_and_the_shadow_writes_no_live_topic(tmp_path: Path):
    live_path, names, group = rh.fraud_copy(tmp_path)
    topology = group.split(".")[0]
    suffix = "." + topology.rsplit("_", 1)[1]  # of every topic of the copy
    new_path = changed_copy(live_path, tmp_path / "new")
    records, _plan = generate_fraud(60, 1500, seed=23, shares=QUIET)
    # the reference: both versions in the driver, on the original (unrenamed) topology files
    src = rh.REPO / "topologies" / "fraud_detection.yaml"
    src_new = changed_copy(src, tmp_path / "src_new")
    old_routes = await asyncio.to_thread(driver_routes, src, records)
    new_routes = await asyncio.to_thread(driver_routes, src_new, records)
    expected = Counter(
        (old_routes.get(s, "(none)"), new_routes.get(s, "(none)"))
        for s in set(old_routes) | set(new_routes)
        if old_routes.get(s, "(none)") != new_routes.get(s, "(none)")
    )
    assert sum(expected.values()) > 20, expected  # the weight change moves inputs
    start = datetime.now(UTC).isoformat()
    live = rh.worker(live_path, tmp_path / "live.log")
    shadow = rh.worker(new_path, tmp_path / "shadow.log")
    try:
        live.start()
        await wait_for_group(group)  # the worker has created the topics
        await produce([r for r in records if r.topic == "customers"], names)
        await wait_done(group.replace("score_transactions", "harmonise_customers"), names["customers"])
        await produce([r for r in records if r.topic == "transactions"], names)
        await wait_done(group, names["transactions"])
        live_topics = [names[t] for t in FRAUD_OUTPUTS] + [names["customers.clean"], names["customers.dlq"]]
        before = await read_all(live_topics)
        shadow.start("--shadow", "--from-time", start)
        shadow_group = group.replace(".score_transactions", ".shadow.score_transactions")
        await wait_done(shadow_group, names["transactions"])
        after = await read_all(live_topics)
        shadow_out = await read_all([f"{names[t]}.shadow" for t in FRAUD_OUTPUTS])
        assert shadow.terminate() == 0, shadow.log()
        assert live.terminate() == 0, live.log()
        code, out, err = await run_cli(
            "shadow", "report", str(new_path), "--live", str(live_path), "--format", "json",
            "--schemas", str(rh.REPO / "schemas"), "--examples", "3",
            env={"STREAM_ORCH_BOOTSTRAP_SERVERS": BOOTSTRAP},
        )  # fmt: skip
        assert code == 0, err
        report = orjson.loads(out)
        code, text, err = await run_cli(
            "shadow", "report", str(new_path), "--live", str(live_path),
            "--schemas", str(rh.REPO / "schemas"),
            env={"STREAM_ORCH_BOOTSTRAP_SERVERS": BOOTSTRAP},
        )  # fmt: skip
        assert code == 0, err
        code, deleted, err = await run_cli(
            "shadow", "delete", str(new_path), env={"STREAM_ORCH_BOOTSTRAP_SERVERS": BOOTSTRAP}
        )
        assert code == 0, err
    finally:
        shadow.stop()
        live.stop()
    # nothing was written to a live topic while the shadow ran, and all there is the live version's
    assert {t: len(v) for t, v in after.items()} == {t: len(v) for t, v in before.items()}
    assert {
        rh._h(r).get(H.TOPOLOGY) or rh._h(r).get(H.ERROR_TOPOLOGY) for v in after.values() for r in v
    } == {topology}
    # the shadow processed every transaction, into its own topics, under its own name
    assert sum(len(v) for v in shadow_out.values()) > 1000
    assert {
        rh._h(r).get(H.TOPOLOGY) or rh._h(r).get(H.ERROR_TOPOLOGY) for v in shadow_out.values() for r in v
    } == {topology + ".shadow"}
    # the report's moves are the driver's (topic names aside: the copy's are suffixed)

    def plain(route: str) -> str:
        return "+".join(part.removesuffix(suffix) for part in route.split("+"))

    moves = {(plain(m["from"]), plain(m["to"])): m["count"] for m in report["moves"]}
    assert moves == dict(expected)
    assert report["window"]["inputs"] == len(set(old_routes) | set(new_routes))
    assert report["score"]["compared"] > 1000 and report["score"]["quantiles"]["p100"] > 0
    assert report["dead_letters"] == {"new": {}, "no_longer": {}}
    assert len(report["examples"]) == 3 and all("email" not in ex["changed"] or
                                                ex["changed"]["email"] == ["(masked)", "(masked)"]
                                                for ex in report["examples"])  # fmt: skip
    (tmp_path / "report.txt").write_text(text)  # kept for a look when the test fails
    assert f"moves ({report['moved']} inputs)" in text and "->" in text
    assert "consumer groups" in deleted
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        left = [t for t in await admin.list_topics() if t.endswith(".shadow") and suffix[1:] in t]
        groups = [g[0] for g in await admin.list_consumer_groups() if g[0] == shadow_group]
    finally:
        await admin.close()
    assert left == [] and groups == []
