"""A global table fed by an exactly-once topology (the fraud topology's customers.clean): every
transaction leaves a commit marker after its records, so the topic's end is one offset past the
last record. The follower must count what it has read, markers included, or its lag never
reaches 0 and, once the topic goes quiet, /health calls the table stale although it is current.
Real broker, a real transactional producer."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from kafka_helpers import create_topic, unique_name

from stream_orch.observability.health import HealthState
from stream_orch.settings import Settings
from stream_orch.state.global_table import GlobalTable
from tests import reliability_harness as rh
from tests.topology_harness import BOOTSTRAP

pytestmark = pytest.mark.integration

STALE_S = 1.5


async def _produce_in_transactions(topic: str, rows: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, transactional_id=f"{topic}-writer")
    await producer.start()
    try:
        for key, value in rows:  # one transaction per row: a marker after each
            async with producer.transaction():
                await producer.send(topic, value, key=key, partition=0)
    finally:
        await producer.stop()


async def test_a_table_fed_in_transactions_is_current_and_stays_healthy_when_quiet() -> None:
    topic = unique_name("profiles-eos")
    await create_topic(BOOTSTRAP, topic, partitions=1)
    row = lambda i: (f"c{i}".encode(), orjson.dumps({"customer_id": f"c{i}", "n": i}))  # noqa: E731
    await _produce_in_transactions(topic, [row(0), row(1)])
    table = GlobalTable(
        "profiles", topic, 1, Settings(bootstrap_servers=BOOTSTRAP).kafka_client_args(), orjson.loads
    )
    health = HealthState()
    await table.start()
    try:
        health.watch_feed("global table profiles", table.fresh_at, stale_seconds=STALE_S)
        await _produce_in_transactions(topic, [row(2)])  # followed, not loaded
        deadline = time.monotonic() + 20
        while table.get("c2", 0) is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert table.get("c2", 0) == {"customer_id": "c2", "n": 2}
        await asyncio.sleep(0.5)  # a few idle fetches: the follower has read past the marker
        assert table.lag() == 0, "a commit marker counted as a record not applied"
        await asyncio.sleep(STALE_S * 2)  # the topic stays quiet
        ok, body = health.liveness()
        assert ok, body
    finally:
        await table.stop()
        await rh.delete_topics([topic])
