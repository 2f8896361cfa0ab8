"""/health, /ready and /metrics served by the real aiohttp server on an ephemeral port."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from stream_orch.observability.health import HealthState
from stream_orch.observability.http import serve
from stream_orch.observability.loop import monitor_event_loop
from stream_orch.observability.metrics import Metrics


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def test_crashed_agent_makes_health_fail_and_names_it() -> None:
    health = HealthState()
    metrics = Metrics()
    server = await serve(metrics, health, "127.0.0.1", 0)
    try:

        async def agent() -> None:
            await asyncio.sleep(0.01)
            raise RuntimeError("poison record")

        async def healthy() -> None:
            await asyncio.sleep(3600)

        task = asyncio.create_task(agent())
        other = asyncio.create_task(healthy())
        health.register_task("enrich", task)
        health.register_task("score", other)
        status, _, body = await get(server.url + "/health")
        assert status == 200, body
        await asyncio.gather(task, return_exceptions=True)
        status, ctype, body = await get(server.url + "/health")
        assert status == 503
        assert ctype.startswith("application/json")
        data = json.loads(body)
        assert data["status"] == "fail"
        assert data["reasons"] == ["agent enrich crashed: RuntimeError: poison record"]
        assert data["tasks"] == {"enrich": "crashed: RuntimeError: poison record", "score": "running"}
        other.cancel()
    finally:
        await server.stop()


async def test_intended_stop_is_not_a_death_but_cancel_without_unregister_is() -> None:
    health = HealthState()
    t1 = asyncio.create_task(asyncio.sleep(3600))
    t2 = asyncio.create_task(asyncio.sleep(3600))
    health.register_task("a", t1)
    health.register_task("b", t2)
    health.unregister_task("a")
    t1.cancel()
    t2.cancel()
    await asyncio.gather(t1, t2, return_exceptions=True)
    live, body = health.liveness()
    assert not live
    assert body["reasons"] == ["agent b cancelled"]


async def test_lag_without_progress_fails_after_stall_seconds() -> None:
    clock = FakeClock()
    health = HealthState(stall_seconds=60, clock=clock)
    health.progress("enrich")
    health.set_lag("enrich", 500)
    clock.now += 59
    assert health.liveness()[0]
    clock.now += 2
    live, body = health.liveness()
    assert not live
    assert body["stalled"]["enrich"]["lag_records"] == 500
    health.progress("enrich")  # it moved: healthy again
    assert health.liveness()[0]
    clock.now += 600
    health.set_lag("enrich", 0)  # idle but caught up: healthy
    assert health.liveness()[0]


async def test_ready_follows_runtime_flag_and_metrics_are_served() -> None:
    health = HealthState()
    metrics = Metrics()
    metrics.batch_done("enrich", "payments", 7)
    server = await serve(metrics, health, "127.0.0.1", 0)
    try:
        status, _, body = await get(server.url + "/ready")
        assert status == 503 and json.loads(body)["reason"] == "starting"
        health.set_ready(False, "restoring table totals")
        status, _, body = await get(server.url + "/ready")
        assert status == 503 and json.loads(body)["reason"] == "restoring table totals"
        health.set_ready(True)
        assert (await get(server.url + "/ready"))[0] == 200
        status, ctype, text = await get(server.url + "/metrics")
        assert status == 200 and ctype.startswith("text/plain")
        assert 'stream_orch_events_in_total{node="enrich",topic="payments"} 7.0' in text
        async with (
            aiohttp.ClientSession() as s,
            s.get(
                server.url + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
            ) as resp,
        ):
            assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
            assert (await resp.text()).rstrip().endswith("# EOF")
    finally:
        await server.stop()


async def test_server_stop_frees_the_port() -> None:
    server = await serve(Metrics(), None, "127.0.0.1", 0)
    port = server.port
    assert (await get(server.url + "/health"))[0] == 200  # exporter mode: no health state
    await server.stop()
    again = await serve(Metrics(), None, "127.0.0.1", port)
    await again.stop()


async def test_event_loop_monitor_sees_a_blocked_loop() -> None:
    metrics = Metrics()
    task = asyncio.create_task(monitor_event_loop(metrics, interval_s=0.05))
    await asyncio.sleep(0.12)
    assert metrics.event_loop_lag._value.get() < 0.1  # idle loop: small overshoot
    time.sleep(0.3)  # block the loop on purpose
    await asyncio.sleep(0.01)  # the monitor's overdue timer fires first
    blocked = metrics.event_loop_lag._value.get()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert 0.2 <= blocked < 1.0


def test_a_target_down_is_reported_and_the_worker_stays_live() -> None:
    clock = FakeClock()
    health = HealthState(clock=clock)
    health.set_target("deliver/pg", False, "ConnectionRefusedError")
    clock.now += 7
    health.set_target("deliver/pg", False, "CannotConnectNowError 57P03")
    live, body = health.liveness()
    assert live and body["status"] == "degraded"
    down = {"deliver/pg": {"reason": "CannotConnectNowError 57P03", "seconds_down": 7.0}}
    assert body["targets_down"] == down
    health.set_target("deliver/pg", True)
    live, body = health.liveness()
    assert live and body["status"] == "ok" and "targets_down" not in body
