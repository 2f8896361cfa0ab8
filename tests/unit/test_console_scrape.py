"""What one console poll asks of a worker: only the series it reads (``/metrics?name[]=...``,
served by the worker's own HTTP server), and what it gets from them."""

from __future__ import annotations

import aiohttp

from stream_orch.console.scrape import QUERY, SERIES, scrape
from stream_orch.observability.http import serve
from stream_orch.observability.metrics import PREFIX, Metrics


def _busy_metrics() -> Metrics:
    m = Metrics()
    m.batch_done("n", "in", 10, {("1", "out"): 7}, {"filtered": 3}, seconds=0.01, e2e_samples=[0.1, 0.2])
    m.batch_phases("n", [("steps", 0.01), ("produce_acks", 0.02)])
    m.dead_letter("n", "invalid_field", 2, "1.validate")
    m.error("n", "ValueError")
    m.node_restarted("n", 1)
    m.table_size("n", "t", 5)
    return m


async def test_named_series_only_and_the_whole_page_without_names() -> None:
    server = await serve(_busy_metrics(), None, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{server.url}/metrics") as resp:
                whole = await resp.text()
            async with session.get(f"{server.url}/metrics?{QUERY}") as resp:
                named = await resp.text()
            reading = await scrape(session, server.url, 0.0)
    finally:
        await server.stop()
    assert "stream_orch_batch_phase_seconds_bucket" in whole
    assert "_bucket" not in named and len(named) < len(whole) / 3
    got = {name for name, _labels in reading.samples}
    assert got == set(SERIES)  # every series the console reads is there, nothing else
    assert reading.samples[("events_out_total", (("node", "n"), ("route", "1"), ("topic", "out")))] == 7
    assert all(f"{PREFIX}{name}" in QUERY for name in SERIES)
