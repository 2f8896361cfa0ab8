"""The console against a real broker and a real worker of the fraud topology.

Proves: edge rates come from the worker's counters (non-zero while records flow); malformed
records show in the node's DLQ counts with their reason, and on the node page at the step that
failed them (decode, normalize, enrich); once nothing more is dead-lettered, the
console's DLQ counts per reason equal `stream-orch dlq inspect`'s (run as a CLI) and its DLQ
page's;
with the worker stopped (SIGSTOP) the console's lag equals what `stream-orch lag` reads
(LagReader.snapshot) at that moment and equals the records produced meanwhile; a killed worker
shows as down while the console keeps answering.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import uuid
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from stream_orch.console.app import make_console_app
from stream_orch.console.live import Live, Topo
from stream_orch.observability.lag import LagReader
from stream_orch.settings import Settings
from stream_orch.topology.loader import load_topology
from tests.integration.test_fraud_topology import MASK_KEY, T0, txn
from tests.kafka_helpers import run_cli
from tests.topology_harness import (
    REPO,
    WorkerProcess,
    delete_topics_with,
    free_port,
    isolated_topology,
    produce_raw,
    wait_for_group,
)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def fraud(tmp_path: Path):  # type: ignore[no-untyped-def]
    suffix = uuid.uuid4().hex[:8]
    path, names = isolated_topology(REPO / "topologies" / "fraud_detection.yaml", tmp_path, suffix)
    worker = WorkerProcess(
        path, tmp_path / "worker.log", env={"STREAM_ORCH_MASK_KEY": MASK_KEY}, metrics_port=free_port()
    )
    yield worker, path, names
    worker.stop()
    asyncio.run(delete_topics_with(suffix))


async def _until(live: Live, name: str, check, timeout: float = 90.0):  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        await live.poll()
        fig = live.figures(name)
        if check(fig):
            return fig
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"console never showed the expected figures: {fig}")
        await asyncio.sleep(1.0)


def _by_reason(summary: str) -> dict[str, int]:
    """The "by reason:" table of `dlq inspect`'s summary (indented rows up to "by node:")."""
    out: dict[str, int] = {}
    for line in summary.split("by reason:\n", 1)[1].splitlines():
        if not line.startswith("  "):
            break
        reason, n = line.split()
        out[reason] = int(n)
    return out


async def _get(live: Live, url: str) -> str:
    """A console page, served by a console app on loopback."""
    client = TestClient(TestServer(make_console_app(live, poll=False)))
    await client.start_server()
    try:
        resp = await client.get(url)
        assert resp.status == 200
        return await resp.text()
    finally:
        await client.close()


def _rejects(html: str, step: str) -> str:
    """The "dead-lettered here" cell of one step on a node page."""
    row = html.split(f"<tr id='step-{step}'>", 1)[1].split("</tr>", 1)[0]
    return row.split("<td class='rejects'>", 1)[1].split("</td>", 1)[0]


def _page_by_reason(html: str) -> dict[str, int]:
    table = html.split("<table id='by-reason'>", 1)[1].split("</table>", 1)[0]
    return {r: int(n) for r, n in re.findall(r"<th scope='row'>([^<]+)</th><td>(\d+)</td>", table)}


async def test_console_figures_follow_the_worker_and_equal_the_cli(fraud) -> None:  # type: ignore[no-untyped-def]
    worker, path, t = fraud
    spec = load_topology(path).spec
    name = spec.topology
    group = f"{name}.score_transactions"
    worker.start()
    await wait_for_group(group)
    settings = Settings()
    live = Live({name: Topo(spec)}, settings, [worker.url])
    graph = live.topologies[name].graph
    input_edge = next(
        f"e{i}" for i, e in enumerate(graph.edges) if e.kind == "input" and e.dst == "node:score_transactions"
    )
    try:
        await live.poll()
        good = [txn(f"c{i}", "A-1", "C-000123", 10 + i, "EUR", "DE", T0 + i) for i in range(300)]
        malformed = [
            (b"bad-1", b"{not json"),
            (b"bad-2", b"\xff\xfe"),
            txn("bad-3", "A-1", "C-000123", "not a number", "EUR", "DE", T0),
        ]
        await produce_raw(t["transactions"], good[:150] + malformed + good[150:])

        fig = await _until(live, name, lambda f: (f["edges"][input_edge] or 0) > 0)
        assert fig["workers"][worker.url] == "ok"
        fig = await _until(
            live, name, lambda f: sum(f["nodes"]["score_transactions"]["dlq_by_reason"].values()) >= 3
        )
        # the malformed ones are dead-lettered at once, before any good one is through its retries
        assert sum(fig["nodes"]["score_transactions"]["dlq_by_reason"].values()) == 3

        # no customer profiles: every good transaction ends in the DLQ after its retry tiers; once
        # all are there (nothing produced meanwhile), the console's DLQ counts per reason are
        # `dlq inspect`'s, and the DLQ page shows the same
        dead = len(good) + len(malformed)
        fig = await _until(
            live,
            name,
            lambda f: sum(f["nodes"]["score_transactions"]["dlq_by_reason"].values()) >= dead,
            timeout=120,
        )
        console_dlq = {r: int(n) for r, n in fig["nodes"]["score_transactions"]["dlq_by_reason"].items()}
        assert sum(console_dlq.values()) == dead and console_dlq["unknown_customer"] == len(good)
        code, out, err = await run_cli("dlq", "inspect", t["transactions.dlq"])
        assert code == 0, err
        assert _by_reason(out) == console_dlq
        dlq_url = f"/console/{name}/dlq/{t['transactions.dlq']}"
        assert _page_by_reason(await _get(live, dlq_url)) == console_dlq
        # the page's dry run is `dlq replay --dry-run`'s plan: all back to the input, nothing written
        html = await _get(live, dlq_url + "?records=3&dry_run=1")
        assert f"would publish {dead} ({t['transactions']}: {dead})" in html
        assert html.count("<section class='record'>") == 3 and "Traceback" not in html
        # the node page counts them at the step that failed them (the worker's step label)
        html = await _get(live, f"/console/{name}/node/score_transactions")
        assert _rejects(html, "decode") == "invalid_utf8: 1, malformed_json: 1"
        assert _rejects(html, "1.normalize") == "invalid_field: 1"
        assert _rejects(html, "3.enrich") == f"unknown_customer: {len(good)}"

        # stop the worker, produce more: the console's lag is the CLI's, and is what was produced
        await _until(live, name, lambda f: f["nodes"]["score_transactions"]["lag_records"] == 0)
        os.kill(worker.proc.pid, signal.SIGSTOP)
        try:
            more = [txn(f"d{i}", "A-1", "C-000123", 5, "EUR", "DE", T0) for i in range(40)]
            await produce_raw(t["transactions"], more)
            await asyncio.sleep(1.0)
            await live.poll()
            console_lag = live.figures(name)["nodes"]["score_transactions"]["lag_records"]
            async with LagReader(settings) as reader:
                cli_rows = await reader.snapshot([group])
            cli_lag = sum(r.lag_records for r in cli_rows if r.topic == t["transactions"])
            assert all(r.topic.startswith(t["transactions"]) for r in cli_rows)  # input + retry tiers
            assert console_lag == sum(r.lag_records for r in cli_rows)
            # under exactly_once, a produced record is one offset (produce_raw is not transactional)
            assert cli_lag == len(more)
        finally:
            os.kill(worker.proc.pid, signal.SIGCONT)

        worker.kill()
        fig = await _until(live, name, lambda f: f["workers"][worker.url] == "down", timeout=30)
        assert fig["nodes"]["score_transactions"]["worker"] == "down"
    finally:
        await live.close()
