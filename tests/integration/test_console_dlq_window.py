"""The console's DLQ page reads a bounded window of the DLQ, on the real broker: with more dead
letters than the window, it reads the newest of each partition, shows the newest records first,
says there are more, and its *older* links page back through the rest, each offset once."""

from __future__ import annotations

import re
import uuid
from html import unescape
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaProducer
from kafka_helpers import create_topic

from stream_orch.console import dlq_page
from stream_orch.console.app import make_console_app
from stream_orch.console.live import Live, Topo
from stream_orch.reliability import headers as H
from stream_orch.settings import Settings
from stream_orch.topology.loader import load_topology
from tests.topology_harness import REPO, isolated_topology

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000
SIZES = {0: 30, 1: 25}  # dead letters per DLQ partition


async def _produce(bootstrap: str, topic: str) -> None:
    """Partition p's record i: event time T0 + 2i + p (partition 0's are the newest), reason
    ``old`` for all but the last 5 of each partition (``new``)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for p, n in SIZES.items():
            for i in range(n):
                reason = b"new: the last five" if i >= n - 5 else b"old: earlier"
                headers = [(H.ERROR_REASON, reason), (H.ERROR_NODE, b"score_transactions")]
                await producer.send(
                    topic,
                    b'{"n": %d}' % i,
                    key=b"k",
                    partition=p,
                    timestamp_ms=T0 + 2 * i + p,
                    headers=headers,
                )
        await producer.flush()
    finally:
        await producer.stop()


def _read(html: str) -> tuple[int, list[str], str | None]:
    """(dead letters read, the records shown as "partition P offset O", the older link)."""
    count = re.search(r"<span id='records'>(\d+)</span>", html)
    shown = re.findall(r"<h3>(partition \d+ offset \d+)</h3>", html)
    older = re.search(r'<a id="older" href="([^"]+)">', html)
    return int(count.group(1)) if count else 0, shown, unescape(older.group(1)) if older else None


async def test_a_dlq_larger_than_the_window_shows_its_newest_and_pages_back_through_the_rest(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dlq_page, "WINDOW", 10)  # 5 offsets of each of the 2 partitions
    path, names = isolated_topology(
        REPO / "topologies" / "fraud_detection.yaml", tmp_path, f"i25tidy{uuid.uuid4().hex[:8]}"
    )
    dlq = names["transactions.dlq"]
    await create_topic(kafka_bootstrap, dlq, partitions=2)
    await _produce(kafka_bootstrap, dlq)
    spec = load_topology(path).spec
    live = Live({spec.topology: Topo(spec)}, Settings(bootstrap_servers=kafka_bootstrap), [])
    client = TestClient(TestServer(make_console_app(live, poll=False)))
    await client.start_server()
    try:
        url = f"/console/{spec.topology}/dlq/{dlq}"
        resp = await client.get(url, params={"records": "3"})
        assert resp.status == 200
        html = await resp.text()
        count, shown, older = _read(html)
        assert count == 10  # not the 55 the DLQ holds
        assert re.search(r"<th scope='row'>new</th><td>10</td>", html), html  # the newest 5 of each
        assert shown == ["partition 0 offset 29", "partition 0 offset 28", "partition 0 offset 27"]
        assert "there are more: 45 older offsets" in html
        assert older == f"{url}?records=3&before=0%3A25%2C1%3A20"
        assert 'id="newest"' not in html
        # the older links page back through the rest: every dead letter read once, then no more
        total, pages = count, 1
        while older is not None:
            html = await (await client.get(older)).text()
            count, shown, older = _read(html)
            total, pages = total + count, pages + 1
            assert 'id="newest"' in html and len(shown) == 3
        assert (total, pages) == (sum(SIZES.values()), 6)
        assert shown == ["partition 0 offset 4", "partition 0 offset 3", "partition 0 offset 2"]
    finally:
        await client.close()
