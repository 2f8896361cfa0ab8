"""The console in a real browser (Debian's Chromium, driven by Playwright): a fraud worker, the
console CLI, records produced; the page's rates, DLQ panel, the status of a stopped worker
(STOP, then OK again), keyboard drill-down to a node and to the DLQ page with its replay dry run
are read from the DOM, and the page logs no console error."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.test_fraud_topology import MASK_KEY, T0, txn
from tests.topology_harness import (
    REPO,
    WorkerProcess,
    delete_topics_with,
    free_port,
    isolated_topology,
    produce_raw,
    wait_for_group,
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="chromium is not installed (apt-get install chromium)"
    ),
]
ROW = "document.querySelector('#row-score_transactions')"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _run(coro) -> None:  # type: ignore[no-untyped-def]
    """asyncio.run in a thread: Playwright's sync API keeps a loop running in this one."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()


def _wait_http(url: str, timeout: float = 30.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_console_in_chromium(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extra)")
    suffix = uuid.uuid4().hex[:8]
    # short retry tiers: the records without a customer profile are through them in ~3 s
    path, t = isolated_topology(
        REPO / "topologies" / "fraud_detection.yaml", tmp_path, suffix, retry_delays=["1s", "1s", "1s"]
    )
    name = f"fraud_detection_{suffix}"
    worker = WorkerProcess(
        path, tmp_path / "worker.log", env={"STREAM_ORCH_MASK_KEY": MASK_KEY}, metrics_port=free_port()
    )
    port = free_port()
    console = None
    try:
        worker.start()
        asyncio.run(wait_for_group(f"{name}.score_transactions"))
        console = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stream_orch.cli.main",
                "console",
                str(path),
                "--port",
                str(port),
                "--workers",
                worker.url,
                # STOP once the last commit is 3 s old (or as old as the window spans), not 30 s:
                # `stream-orch lag`'s option, so the test need not wait half a minute
                "--min-stop",
                "3",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        page_url = f"http://127.0.0.1:{port}/console/{name}"
        _wait_http(page_url)
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch_persistent_context(
                tempfile.mkdtemp(dir=tmp_path), executable_path=CHROMIUM, args=ARGS, headless=True
            )
            page = browser.new_page()
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(page_url)
            good = [txn(f"c{i}", "A-1", "C-000123", 10 + i, "EUR", "DE", T0 + i) for i in range(400)]
            _run(produce_raw(t["transactions"], [*good[:200], (b"bad", b"{not json"), *good[200:]]))
            # an edge's rate becomes non-zero
            page.wait_for_function(
                "[...document.querySelectorAll('.edge .rate')].some(e => parseFloat(e.textContent) > 0)",
                timeout=60_000,
            )
            # the malformed record shows in the DLQ panel with a reason
            page.wait_for_function(
                "document.querySelector('#row-score_transactions .dlq').textContent.includes(':')",
                timeout=60_000,
            )
            # all through: every good record (no customer profile) dead-lettered after its three
            # 1 s retry tiers, nothing behind, the status is OK
            page.wait_for_function(
                f"{ROW}.querySelector('.dlq').textContent.includes('unknown_customer: {len(good)}') && "
                f"{ROW}.querySelector('.lag').textContent === '0' && "
                f"{ROW}.querySelector('.status').textContent === 'OK'",
                timeout=60_000,
            )
            page.screenshot(path=str(tmp_path / "console.png"), full_page=True)
            if os.environ.get("CONSOLE_SCREENSHOT"):
                shutil.copy(tmp_path / "console.png", REPO / "docs" / "img" / "console-fraud.png")
            # the worker stopped with records waiting: lag rises, and its committed offsets stop
            # moving while records wait, which the Burrow rule (as `stream-orch lag`) calls STOP.
            # (STALL is a consumer that commits the same offset again and again; a stopped one
            # commits nothing, and a poller of committed offsets sees no commit at all.)
            os.kill(worker.proc.pid, signal.SIGSTOP)
            try:
                more = [txn(f"d{i}", "A-1", "C-000123", 5, "EUR", "DE", T0) for i in range(50)]
                _run(produce_raw(t["transactions"], more))
                page.wait_for_function(
                    f"parseInt({ROW}.querySelector('.lag').textContent) >= 50", timeout=60_000
                )
                page.wait_for_function(
                    f"{ROW}.querySelector('.status').textContent === 'STOP'", timeout=60_000
                )
                # the graph's box says it too (waited for: it may be drawn a poll after the row)
                page.wait_for_function(
                    "document.querySelector(\"[id='v-node:score_transactions'] .figure\")"
                    ".textContent.includes('STOP')",
                    timeout=15_000,
                )
            finally:
                os.kill(worker.proc.pid, signal.SIGCONT)
            # it goes on: the lag is worked off and the status is OK again
            page.wait_for_function(
                f"{ROW}.querySelector('.lag').textContent === '0' && "
                f"{ROW}.querySelector('.status').textContent === 'OK'",
                timeout=60_000,
            )
            # keyboard: the graph's DLQ box is a link; Enter opens the DLQ page (dlq inspect's view)
            page.focus("a.dlqlink[href$='/dlq/" + t["transactions.dlq"] + "']")
            page.keyboard.press("Enter")
            page.wait_for_url("**/dlq/" + t["transactions.dlq"])
            assert page.text_content("#by-reason").count("malformed_json") == 1
            page.focus("#dry-run")
            page.keyboard.press("Enter")
            page.wait_for_selector("#plan-result")
            assert "would publish" in page.text_content("#plan-result")
            page.goto(page_url)
            # keyboard: tab to the node's link in the graph, Enter opens its page
            page.focus("a[href$='/node/score_transactions']")
            page.keyboard.press("Enter")
            page.wait_for_url("**/node/score_transactions")
            assert "Steps" in page.content()
            # a killed worker: its node shows down, the page keeps working
            page.goto(page_url)
            worker.kill()
            page.wait_for_function(
                f"{ROW}.querySelector('.worker').textContent === 'down'",
                timeout=30_000,
            )
            assert problems == [], f"console errors in the page: {problems}"
            browser.close()
    finally:
        if console is not None:
            console.terminate()
            console.wait(10)
        worker.stop()
        asyncio.run(delete_topics_with(suffix))
