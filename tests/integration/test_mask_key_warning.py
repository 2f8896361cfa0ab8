"""A real worker of the fraud topology started without STREAM_ORCH_MASK_KEY runs with the public
demo key and says so once at start, naming the variable and never the key."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from stream_orch.steps.mask import DEMO_KEY
from tests.topology_harness import BOOTSTRAP, REPO, WorkerProcess, isolated_topology

pytestmark = pytest.mark.integration


async def _delete_topics_with(suffix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if suffix in t]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


async def test_the_demo_key_is_named_once_at_worker_start(tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    path, _ = isolated_topology(REPO / "topologies" / "fraud_detection.yaml", tmp_path, suffix)
    worker = WorkerProcess(path, tmp_path / "worker.log")
    worker.env.pop("STREAM_ORCH_MASK_KEY", None)
    try:
        worker.start()
        deadline = time.monotonic() + 60
        lines: list[str] = []
        while time.monotonic() < deadline and not lines:
            await asyncio.sleep(0.2)
            lines = [line for line in worker.log_path.read_text().splitlines() if "mask key" in line]
            assert worker.proc is not None and worker.proc.poll() is None, worker.log_path.read_text()
        assert worker.terminate() == 0
        lines = [line for line in worker.log_path.read_text().splitlines() if "mask key" in line]
        assert len(lines) == 1, worker.log_path.read_text()
        assert "WARNING" in lines[0] and "STREAM_ORCH_MASK_KEY" in lines[0] and "public demo key" in lines[0]
        assert DEMO_KEY not in worker.log_path.read_text()
    finally:
        worker.stop()
        await _delete_topics_with(suffix)
