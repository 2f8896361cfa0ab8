"""`stream-orch run` refuses what it cannot run, with one line and no traceback."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.topology_harness import BOOTSTRAP, REPO, isolated_topology

pytestmark = pytest.mark.integration


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "stream_orch.cli.main",
            "--bootstrap-servers",
            BOOTSTRAP,
            "--metrics-port",
            "0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def test_run_refuses_a_topic_with_fewer_partitions(tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    path, names = isolated_topology(REPO / "topologies" / "fraud_detection.yaml", tmp_path, suffix)
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(names["transactions"], 2, 1)])
    finally:
        await admin.close()
    result = run_cli("run", str(path), "--schemas", str(REPO / "schemas"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"topic '{names['transactions']}' has 2 partitions but the topology declares 6" in lines[0]
    assert "Traceback" not in result.stderr


def test_run_reports_a_missing_file_and_a_bad_topology(tmp_path: Path) -> None:
    missing = run_cli("run", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"stream-orch: error: topology file not found: {tmp_path / 'nope.yaml'}"

    bad = tmp_path / "bad.yaml"
    bad.write_text("topology: t\ntopics: {a: {partitions: zero}}\nnodes: {}\n")
    result = run_cli("run", str(bad))
    assert result.returncode == 1
    assert f"{bad}:2:" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_rejects_an_unknown_node(tmp_path: Path) -> None:
    result = run_cli("run", str(REPO / "topologies" / "fraud_detection.yaml"), "--node", "nope")
    assert result.returncode == 2
    assert "no node 'nope'" in result.stderr and "Traceback" not in result.stderr


def test_run_refuses_a_topology_that_fails_lint(tmp_path: Path) -> None:
    text = (REPO / "topologies" / "fraud_detection.yaml").read_text()
    broken = tmp_path / "topologies" / "broken.yaml"
    broken.parent.mkdir()
    broken.write_text(
        text.replace("key: customer_id\n        fields: [name", "key: customer_idd\n        fields: [name")
    )
    result = run_cli("run", str(broken), "--schemas", str(REPO / "schemas"))
    assert result.returncode == 1
    assert "customer_idd" in result.stderr and f"{broken}:" in result.stderr
    assert "Traceback" not in result.stderr


async def _create(topics: dict[str, int]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, n, 1) for name, n in topics.items()])
    finally:
        await admin.close()


@pytest.mark.parametrize("which", ["input", "changelog", "retry"])
async def test_run_refuses_co_partitioned_topics_whose_partition_counts_differ(
    tmp_path: Path, which: str
) -> None:
    """Issue 14, defect 8: a node's input, its retry topics and the changelogs of the tables it
    writes share partition numbers (a key's state lives on its record's partition). One with
    *more* partitions than the others was accepted, and keys and their state parted ways."""
    suffix = uuid.uuid4().hex[:8]
    path, names = isolated_topology(REPO / "topologies" / "fraud_detection.yaml", tmp_path, suffix)
    txns = names["transactions"]
    topic = {
        "input": txns,
        "changelog": f"fraud_detection_{suffix}.seen_txns.changelog",
        "retry": f"{txns}.retry.1",
    }[which]
    await _create({topic: 8})
    result = run_cli("run", str(path), "--schemas", str(REPO / "schemas"))
    assert result.returncode == 1, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"topic '{topic}' has 8 partitions" in lines[0]
    assert "6" in lines[0] and "co-partitioned" in lines[0]
    assert "Traceback" not in result.stderr
