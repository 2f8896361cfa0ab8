"""A local 3-broker cluster of a test's own (``stream-orch kafka up --brokers 3`` in a temporary
state folder, on free ports), never the shared broker; nodes are killed with SIGKILL, stopped
and started one by one through the CLI (``--broker N``), and partition leaders are read back.

The tests using it are marked ``cluster`` and run only with ``STREAM_ORCH_CLUSTER_TESTS=1``
(``make test-cluster``): three more JVMs do not fit beside ``make test`` on a 2-core machine.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from stream_orch.broker.cluster import ClusterManager
from stream_orch.broker.jars import jars_ready
from stream_orch.broker.layout import BrokerLayout
from tests import reliability_harness as rh

BROKERS = 3
ENABLED = os.environ.get("STREAM_ORCH_CLUSTER_TESTS") == "1"
MARKS = [
    pytest.mark.integration,
    pytest.mark.cluster,
    pytest.mark.skipif(not ENABLED, reason="cluster tests: make test-cluster (STREAM_ORCH_CLUSTER_TESTS=1)"),
]


def _free_range(start: int, stop: int, width: int) -> int:
    for base in range(start, stop, width):
        if all(rh._free(p) for p in range(base, base + width)):
            return base
    raise RuntimeError(f"no {width} free ports in {start}..{stop}")


class OwnCluster:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.port = _free_range(9292, 9492, 2 * BROKERS)
        self.bootstrap = ",".join(f"127.0.0.1:{self.port + i}" for i in range(BROKERS))
        layout = BrokerLayout.under(state_dir)
        project = BrokerLayout.under(rh.REPO / ".state").jars_dir
        layout.root.mkdir(parents=True, exist_ok=True)
        if jars_ready(project) and not layout.jars_dir.exists():
            layout.jars_dir.symlink_to(project, target_is_directory=True)

    def cli(self, *args: str, timeout: float = 240, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "stream_orch.cli.main", "--kafka-port", str(self.port)]
        cmd += ["--state-dir", str(self.state_dir), "kafka", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done

    def up(self, broker: int | None = None) -> float:
        started = time.monotonic()
        self.cli("up", *(["--broker", str(broker)] if broker else ["--brokers", str(BROKERS)]))
        return time.monotonic() - started

    def down(self, broker: int | None = None) -> None:
        self.cli("down", *(["--broker", str(broker)] if broker else []))

    def manager(self) -> ClusterManager:
        found = ClusterManager.existing(self.state_dir, say=lambda _m: None)
        assert found is not None, f"no cluster recorded under {self.state_dir}"
        return found

    def pid(self, broker: int) -> int | None:
        from stream_orch.broker import process

        return process.running_pid(self.manager().nodes[broker - 1].layout)

    def kill9(self, broker: int) -> None:
        pid = self.pid(broker)
        assert pid is not None, f"broker {broker} is not running"
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.pid(broker) is not None and time.monotonic() < deadline:
            time.sleep(0.1)


async def leaders(bootstrap: str, topics: list[str]) -> Counter[int]:
    """How many partitions of ``topics`` each broker leads."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        counts: Counter[int] = Counter()
        for topic in await admin.describe_topics(topics):
            for p in topic["partitions"]:
                counts[p["leader"]] += 1
        return counts
    finally:
        await admin.close()


async def replication_of(bootstrap: str, topic: str, timeout: float = 20.0) -> tuple[list[int], str | None]:
    """Replica count of each partition of ``topic`` and its ``min.insync.replicas``, asked again
    until a broker knows both (a topic just created reaches every broker's metadata soon after)."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            (described,) = await admin.describe_topics([topic])
            replicas = [len(p["replicas"]) for p in described["partitions"]]
            (response,) = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic, {"min.insync.replicas": None})]
            )
            configs = {e[0]: e[1] for e in response.resources[0][4]}
            min_isr = configs.get("min.insync.replicas")
            if (replicas and min_isr is not None) or time.monotonic() > deadline:
                return replicas, min_isr
            await asyncio.sleep(0.5)
    finally:
        await admin.close()
