"""/health of a real consuming agent on the real broker: a crash or stuck lag makes it fail."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream_orch.observability.health import HealthState
from stream_orch.observability.http import serve
from stream_orch.observability.lag import LagCollector, LagReader
from stream_orch.observability.metrics import Metrics
from stream_orch.settings import Settings

pytestmark = pytest.mark.integration
BOOTSTRAP = Settings().bootstrap_servers


async def health_of(url: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s, s.get(url + "/health") as resp:
        return resp.status, await resp.json()


async def test_agent_crashing_on_poison_record_fails_health_and_stuck_lag_too() -> None:
    topic, group = f"health-{uuid.uuid4().hex[:8]}", f"health-{uuid.uuid4().hex[:8]}-g"
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
    await producer.start()
    for i in range(10):
        await producer.send_and_wait(topic, b"poison" if i == 5 else b"ok")
    await producer.stop()

    health = HealthState(stall_seconds=1.0)
    metrics = Metrics()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=BOOTSTRAP,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()

    async def agent() -> None:
        while True:
            for _, records in (await consumer.getmany(timeout_ms=200, max_records=1)).items():
                for rec in records:
                    if rec.value == b"poison":
                        raise ValueError(f"cannot parse offset {rec.offset}")
                    await consumer.commit()
                    health.progress("parse")
                    metrics.batch_done("parse", topic, 1)

    server = await serve(metrics, health, "127.0.0.1", 0)
    task = asyncio.create_task(agent())
    health.register_task("parse", task)
    try:
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 30)
        status, body = await health_of(server.url)
        assert status == 503
        assert body["reasons"] == ["agent parse crashed: ValueError: cannot parse offset 5"]

        # the worker restarts the agent, which now just waits (stuck before the poison record):
        # the lag collector sees lag 5 and no progress -> 503 naming the node
        stuck = asyncio.create_task(asyncio.sleep(3600))
        health.register_task("parse", stuck)
        async with LagReader(Settings(bootstrap_servers=BOOTSTRAP)) as reader:
            collector = LagCollector(
                reader, metrics, groups=[group], health=health, node_of_group={group: "parse"}
            )
            rows = await collector.poll_once()
            assert [r.lag_records for r in rows] == [5]
            health.progress("parse")
            assert (await health_of(server.url))[0] == 200
            await asyncio.sleep(1.2)
            status, body = await health_of(server.url)
            assert status == 503
            assert body["stalled"]["parse"]["lag_records"] == 5
        stuck.cancel()
        health.unregister_task("parse")
    finally:
        await server.stop()
        await consumer.stop()
