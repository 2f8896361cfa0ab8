"""Issue 14: defects found by reading the runtime, each shown by a fault put into real parts
(the real broker; the worker's pieces in this process so a test can reach them)."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError
from kafka_helpers import create_topic, unique_name

from stream_orch.observability.health import HealthState
from stream_orch.observability.metrics import Metrics
from stream_orch.settings import Settings
from stream_orch.state.global_table import GlobalTable
from tests import reliability_harness as rh
from tests.topology_harness import BOOTSTRAP

pytestmark = pytest.mark.integration


async def _until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return predicate()


def _sample(metrics: Metrics, name: str, table: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"table": table})


async def test_a_global_table_follower_that_fails_restarts_and_is_reported_while_stale(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Defect 7: any error in the follower's consumer ended its task and the table went stale
    with no metric, log or health signal. Now it restarts with backoff where it stopped, and
    its lag, last-applied time and restarts are exported; /health fails while it is stale."""
    topic = unique_name("profiles")
    await create_topic(BOOTSTRAP, topic, partitions=2)
    row = lambda i: (f"c{i}".encode(), orjson.dumps({"customer_id": f"c{i}", "n": i}))  # noqa: E731
    await rh.produce_bulk(topic, [row(i) for i in range(3)])
    table = GlobalTable(
        "profiles", topic, 2, Settings(bootstrap_servers=BOOTSTRAP).kafka_client_args(), orjson.loads
    )
    health, metrics = HealthState(), Metrics()
    await table.start()
    try:
        health.watch_feed("global table profiles", table.fresh_at, stale_seconds=1.5)
        metrics.watch_global_tables([table])
        assert len(table) == 3 and health.liveness()[0]

        broken = True
        real_getmany = AIOKafkaConsumer.getmany

        async def getmany(self, *args, **kwargs):  # the broker connection drops, for a while
            if broken:
                await asyncio.sleep(0.05)
                raise KafkaConnectionError("injected: connection to the broker lost")
            return await real_getmany(self, *args, **kwargs)

        monkeypatch.setattr(AIOKafkaConsumer, "getmany", getmany)
        await rh.produce_bulk(topic, [row(i) for i in range(3, 6)])
        assert await _until(lambda: not health.liveness()[0], timeout=10), "a stale table passed /health"
        body = health.liveness()[1]
        assert "global table profiles" in body["stale"] and "stale" in body["reasons"][0]
        assert table.restarts >= 1, "the follower was not restarted"
        assert _sample(metrics, "stream_orch_global_table_follower_restarts_total", "profiles") >= 1
        assert table.get("c4", 0) is None

        broken = False  # the broker is back: the follower resumes where it stopped
        assert await _until(lambda: table.get("c5", 0) is not None, timeout=40), (
            "the follower never came back"
        )
        assert await _until(lambda: health.liveness()[0], timeout=5), health.liveness()[1]
        assert len(table) == 6 and table.get("c4", 0) == {"customer_id": "c4", "n": 4}
        assert _sample(metrics, "stream_orch_global_table_lag_records", "profiles") == 0
        applied = _sample(metrics, "stream_orch_global_table_last_applied_timestamp_seconds", "profiles")
        assert applied is not None and time.time() - applied < 60
        restarts = table.restarts
        rh.record_result(
            "a global table's follower fails for a while: restarted, stale reported, nothing lost",
            events_in=6,
            lost=6 - len(table),
            duplicated_outputs=0,
            follower_restarts=restarts,
        )
    finally:
        await table.stop()
