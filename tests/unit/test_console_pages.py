"""The console's layout, its reading of workers' /metrics, and its pages' bad-input behaviour.

Workers here are real aiohttp servers on loopback answering what a test wants; the broker is an
address nothing listens on (the banner case) - no mocks of the console's own code.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from stream_orch.console.app import LIVE, make_console_app
from stream_orch.console.layout import layers, place, to_svg
from stream_orch.console.live import Live, Topo
from stream_orch.console.scrape import Unreadable, parse
from stream_orch.settings import Settings
from stream_orch.topology.graph import build_graph
from stream_orch.topology.loader import load_topology

FRAUD = Path(__file__).resolve().parents[2] / "topologies" / "fraud_detection.yaml"


def _spec():  # type: ignore[no-untyped-def]
    return load_topology(FRAUD).spec


def test_layout_puts_every_non_retry_edge_left_to_right_and_no_two_vertices_on_one_spot() -> None:
    graph = build_graph(_spec())
    layer = layers(graph)
    for e in graph.edges:
        if e.kind != "retry":
            assert layer[e.src] < layer[e.dst], e
    spots = [(p.x, p.y) for p in place(graph).values()]
    assert len(spots) == len(set(spots))


def test_svg_makes_each_node_a_link_to_its_page_and_escapes_names() -> None:
    graph = build_graph(_spec())
    svg = to_svg(graph, {n: f"/console/t/node/{n}" for n in graph.nodes})
    for n in graph.nodes:
        assert f'href="/console/t/node/{n}"' in svg
    assert svg.count("<a ") == len(graph.nodes)


def test_parse_reads_counters_and_refuses_garbage() -> None:
    text = 'stream_orch_events_in_total{node="a",topic="t"} 3\nother_metric 1\n'
    assert parse(text) == {("events_in_total", (("node", "a"), ("topic", "t"))): 3.0}
    for garbage in ("garbage {{{ here", "\x00\x01\x02", "<html>nope</html>"):
        with pytest.raises(Unreadable):
            parse(garbage)


async def _worker(body: str) -> TestServer:
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=body)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    server = TestServer(app)
    await server.start_server()
    return server


@pytest.fixture
async def console() -> AsyncIterator[tuple[TestClient, list[TestServer]]]:
    good = await _worker('stream_orch_events_in_total{node="score_transactions",topic="transactions"} 5\n')
    bad = await _worker("this is not prometheus {{{")
    # nothing listens on port 1: the broker is down
    settings = Settings(bootstrap_servers="127.0.0.1:1", request_timeout_s=1.0)
    spec = _spec()
    live = Live(
        {spec.topology: Topo(spec)},
        settings,
        [str(good.make_url("")), str(bad.make_url("")), "http://127.0.0.1:1"],
    )
    await live.poll()
    client = TestClient(TestServer(make_console_app(live, poll=False)))
    await client.start_server()
    yield client, [good, bad]
    await client.close()
    await live.close()
    for s in (good, bad):
        await s.close()


async def test_unknown_topology_is_a_404_page_naming_the_known_ones(console) -> None:  # type: ignore[no-untyped-def]
    client, _ = console
    resp = await client.get("/console/nope")
    text = await resp.text()
    assert resp.status == 404
    assert "no topology named" in text and "fraud_detection" in text
    assert "Traceback" not in text


async def test_broker_down_shows_a_banner_and_workers_their_state(console) -> None:  # type: ignore[no-untyped-def]
    client, (good, bad) = console
    resp = await client.get("/console/fraud_detection")
    text = await resp.text()
    assert resp.status == 200
    assert "broker unreachable at 127.0.0.1:1" in text
    fig = await (await client.get("/console/fraud_detection/data.json")).json()
    states = fig["workers"]
    assert states[str(bad.make_url(""))] == "metrics unreadable"
    assert states[str(good.make_url(""))] == "ok"
    assert states["http://127.0.0.1:1"] == "down"
    # score_transactions runs on the readable worker; the other node has no readable worker
    assert fig["nodes"]["score_transactions"]["worker"] is None
    assert fig["nodes"]["harmonise_customers"]["worker"] in {"down", "metrics unreadable"}


async def test_node_page_and_unknown_node(console) -> None:  # type: ignore[no-untyped-def]
    client, _ = console
    ok = await client.get("/console/fraud_detection/node/score_transactions")
    assert ok.status == 200
    assert "Steps" in await ok.text()
    missing = await client.get("/console/fraud_detection/node/nope")
    assert missing.status == 404
    assert "has no node" in await missing.text()


async def test_an_error_in_a_page_is_a_plain_500_without_trace(console) -> None:  # type: ignore[no-untyped-def]
    client, _ = console
    live = client.server.app[LIVE]  # type: ignore[union-attr]
    live.topologies["fraud_detection"].graph = None  # a broken render
    resp = await client.get("/console/fraud_detection")
    text = await resp.text()
    assert resp.status == 500
    assert "Traceback" not in text and "AttributeError" not in text


async def test_worker_http_server_serves_the_console_only_when_enabled() -> None:
    from stream_orch.console.app import console_mount
    from stream_orch.observability.http import serve
    from stream_orch.observability.metrics import Metrics

    spec = _spec()
    settings = Settings(bootstrap_servers="127.0.0.1:1", request_timeout_s=1.0, metrics_port=1)
    on = await serve(Metrics(), None, "127.0.0.1", 0, extra=console_mount(spec, settings))
    off = await serve(Metrics(), None, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):  # the console's first poll runs in the background
                async with session.get(f"{on.url}/console/{spec.topology}") as resp:
                    assert resp.status == 200
                    if "broker unreachable" in await resp.text():
                        break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the worker's console never polled")
            async with session.get(f"{on.url}/metrics") as resp:
                assert resp.status == 200  # the worker's own routes are unchanged
            async with session.get(f"{off.url}/console/{spec.topology}") as resp:
                assert resp.status == 404
    finally:
        await on.stop()
        await off.stop()
