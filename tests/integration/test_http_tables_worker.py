"""A real worker's HTTP server on the real broker (issue 19, item 1): bound to loopback and without
/tables by default; with `run --serve-tables` /tables answers only the bearer token from
STREAM_ORCH_HTTP_TOKEN, and the values it serves have the topology's mask fields masked, while
/metrics, /health and /ready stay open."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from stream_orch.runtime.inspect import MASKED
from stream_orch.steps.join import SEP
from tests.topology_harness import BOOTSTRAP, WorkerProcess, free_port, produce_raw

pytestmark = pytest.mark.integration

TOKEN = "integration-token-" + uuid.uuid4().hex

TOPOLOGY = """\
topology: http_tables_{s}
topics:
  orders.{s}: {{partitions: 1, key: order_id}}
  shipments.{s}: {{partitions: 1, key: order_id}}
  orders.shipped.{s}: {{partitions: 1, key: order_id}}
tables:
  awaiting_shipment: {{description: Orders and shipments waiting for their counterpart.}}
nodes:
  ship:
    input: orders.{s}
    steps:
      - {{step: join, topic: shipments.{s}, table: awaiting_shipment, key: order_id, after: 1h}}
      - {{step: mask, fields: {{email: hash, name: drop}}}}
    routes:
      - to: orders.shipped.{s}
    errors:
      dlq: orders.dlq.{s}
"""


async def _get(url: str, token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s,
        s.get(url, headers=headers) as resp,
    ):
        body = await resp.read()
        return resp.status, orjson.loads(body) if resp.content_type == "application/json" else body


async def _until_ready(base: str, worker: WorkerProcess) -> None:
    """Wait until the worker answers /ready with 200 (its partitions assigned)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            if (await _get(base + "/ready"))[0] == 200:
                return
        except aiohttp.ClientError:
            pass  # not listening yet
        assert time.monotonic() < deadline, worker.log()
        await asyncio.sleep(0.3)


def _listening_addresses(port: int) -> set[str]:
    """The local addresses (hex, as the kernel writes them) of TCP sockets listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.rpartition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


async def _delete_topics(suffix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if suffix in t]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


async def test_tables_are_off_by_default_then_need_the_token_and_are_masked(tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    path = tmp_path / "http_tables.yaml"
    path.write_text(TOPOLOGY.format(s=suffix))
    workers: list[WorkerProcess] = []
    try:
        # 1. enabling /tables without a token: one line at start, before anything is served
        refused = WorkerProcess(path, tmp_path / "no-token.log", metrics_port=free_port())
        refused.env.pop("STREAM_ORCH_HTTP_TOKEN", None)
        workers.append(refused.start("--serve-tables"))
        assert refused.proc is not None and refused.proc.wait(60) == 2
        lines = [ln for ln in refused.log().splitlines() if ln.strip()]
        assert len(lines) == 1 and "STREAM_ORCH_HTTP_TOKEN" in lines[0], lines

        # 2. the defaults: bound to 127.0.0.1 only, /tables 404, /metrics /health /ready open
        plain = WorkerProcess(path, tmp_path / "worker.log", metrics_port=free_port())
        del plain.env["STREAM_ORCH_METRICS_HOST"]  # the harness pins it; here the default counts
        plain.env.pop("STREAM_ORCH_TABLES_ENDPOINT", None)
        workers.append(plain.start())
        await _until_ready(plain.url, plain)
        assert _listening_addresses(plain.metrics_port) == {"0100007F"}, plain.log()  # 127.0.0.1
        for what in ("/tables", f"/tables/awaiting_shipment/{quote('x', safe='')}"):
            status, body = await _get(plain.url + what, TOKEN)
            assert status == 404, (what, body)
        for what in ("/metrics", "/health", "/ready"):
            assert (await _get(plain.url + what))[0] == 200, what
        assert plain.terminate() == 0

        # 3. --serve-tables with the token: 401 without or with a wrong one, 200 masked with it
        worker = WorkerProcess(
            path, tmp_path / "worker.log", env={"STREAM_ORCH_HTTP_TOKEN": TOKEN}, metrics_port=free_port()
        )  # the same state folder: the same static member, its partition back at once
        workers.append(worker.start("--serve-tables"))
        await _until_ready(worker.url, worker)
        ts = int(time.time() * 1000)
        order = {"order_id": "O-1", "email": "ann@example.com", "name": "Ann", "amount": 12.5, "ts": ts}
        await produce_raw(f"orders.{suffix}", [(b"O-1", orjson.dumps(order))])
        entry = f"L{SEP}O-1{SEP}{ts:015d}{SEP}{0:015d}"  # the join's buffered left record, offset 0
        url = f"{worker.url}/tables/awaiting_shipment/{quote(entry, safe='')}"
        deadline = time.monotonic() + 60
        while (found := await _get(url, TOKEN))[0] != 200:
            assert time.monotonic() < deadline, (found, worker.log())
            await asyncio.sleep(0.5)
        body = found[1]
        assert body["value"]["v"] == {**order, "email": MASKED, "name": MASKED}, body
        assert b"ann@example.com" not in orjson.dumps(body) and b"Ann" not in orjson.dumps(body)
        for what in (url, f"{worker.url}/tables"):
            for wrong in (None, "wrong", TOKEN[:-1]):
                status, body = await _get(what, wrong)
                assert status == 401 and b"ann@" not in orjson.dumps(body), (what, wrong, body)
        status, stats = await _get(f"{worker.url}/tables", TOKEN)
        assert status == 200 and stats["awaiting_shipment"]["node"] == "ship"
        for what in ("/metrics", "/health", "/ready"):
            assert (await _get(worker.url + what))[0] == 200, what
        assert worker.terminate() == 0
        assert TOKEN not in worker.log_path.read_text()
    finally:
        for w in workers:
            w.stop()
        await _delete_topics(suffix)
