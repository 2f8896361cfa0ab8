"""Alerting end to end with real parts: the Debian ``prometheus`` and ``prometheus-alertmanager``
binaries on free loopback ports, the project's configs (deploy/), a real worker on the real broker,
the lag exporter, and a local webhook standing in for the pager and the ticket system.

* a worker stopped under lag (SIGSTOP) makes ``StreamOrchConsumerStalled`` go pending, firing,
  reach the ``pager`` receiver, and resolve after SIGCONT;
* a cluster-wide stall (``StreamOrchManyGroupsStalled``) pages once: Alertmanager inhibits the
  per-group alerts;
* ``stream-orch alerts forward`` turns fraud.alerts records into alerts on the same escalation path,
  and the same key pages once.

What the test copies change, and only that: scrape and evaluation every 1 s, the targets' ports,
Alertmanager's group_wait/group_interval (1 s / 2 s instead of 10-30 s / 5 min) and the
``for`` of StreamOrchConsumerStalled (6 s instead of 5 min). The rule expressions are the
project's, byte for byte. Skipped when the binaries are missing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from aiokafka import AIOKafkaProducer
from ruamel.yaml import YAML

from tests.topology_harness import (
    BOOTSTRAP,
    REPO,
    WorkerProcess,
    free_port,
    isolated_topology,
    scrape,
    wait_for_group,
)

PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("alertmanager") or shutil.which("prometheus-alertmanager")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        PROMETHEUS is None or ALERTMANAGER is None,
        reason="prometheus and alertmanager binaries not installed "
        "(Debian: apt-get install prometheus prometheus-alertmanager; .ci/run does)",
    ),
]

RULES = REPO / "deploy" / "prometheus" / "alerts.yml"
PROM_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
AM_CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
FORWARD = REPO / "tests" / "fixtures" / "topologies" / "obs_forward.yaml"
WEBHOOK_BASE = "http://host.docker.internal:9095"  # as written in alertmanager.yml
STALLED = "StreamOrchConsumerStalled"
STALLED_FOR = "6s"  # the test copy's `for` (5m in the project)


# ---------------------------------------------------------------------------------------- helpers


async def wait_until(check: Callable[[], Awaitable[Any]], timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


async def get_json(url: str) -> Any:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as s, s.get(url) as resp:
        resp.raise_for_status()
        return await resp.json()


async def post_json(url: str, body: Any) -> None:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as s, s.post(url, json=body) as resp:
        assert resp.status < 300, await resp.text()


async def wait_ready(url: str, timeout: float = 30.0) -> None:
    async def ready() -> bool:
        try:
            timeout_ = aiohttp.ClientTimeout(total=2)
            async with aiohttp.ClientSession(timeout=timeout_) as s, s.get(url) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    await wait_until(ready, timeout, url, interval=0.2)


class Webhook:
    """The pager and the ticket system: records every notification Alertmanager POSTs."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.received: list[tuple[float, str, dict[str, Any]]] = []  # (time, receiver path, payload)
        self._runner: web.AppRunner | None = None

    async def start(self) -> Webhook:
        app = web.Application()
        app.router.add_post("/{receiver}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append((time.time(), request.match_info["receiver"], await request.json()))
        return web.Response(text="ok")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def notifications(self, receiver: str | None = None, **labels: str) -> list[tuple[float, str, dict]]:
        """Notifications (to ``receiver``, if given) holding an alert with ``labels``."""
        return [
            (t, r, p)
            for t, r, p in self.received
            if (receiver is None or r == receiver)
            and any(labels.items() <= a["labels"].items() for a in p["alerts"])
        ]


class Processes:
    def __init__(self) -> None:
        self.procs: list[tuple[subprocess.Popen, Path]] = []

    def start(self, args: list[str], log: Path, **kwargs: Any) -> subprocess.Popen:
        proc = subprocess.Popen(args, stdout=log.open("ab"), stderr=subprocess.STDOUT, **kwargs)
        self.procs.append((proc, log))
        return proc

    def logs(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for _, log in self.procs
        )

    def stop_all(self) -> None:
        for proc, _ in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


@pytest.fixture
def procs() -> Iterator[Processes]:
    p = Processes()
    yield p
    p.stop_all()


@pytest_asyncio.fixture
async def webhook() -> AsyncIterator[Webhook]:
    hook = await Webhook().start()
    yield hook
    await hook.stop()


def render_alertmanager(tmp: Path, webhook: Webhook) -> Path:
    """The project's alertmanager.yml with the webhook's address and short group timers."""
    yaml = YAML()
    yaml.preserve_quotes = True
    text = AM_CONFIG.read_text()
    assert WEBHOOK_BASE in text
    doc = yaml.load(text.replace(WEBHOOK_BASE, webhook.base))

    def shorten(route: Any) -> None:
        if "group_wait" in route:
            route["group_wait"] = "1s"
        if "group_interval" in route:
            route["group_interval"] = "2s"
        for child in route.get("routes", []):
            shorten(child)

    shorten(doc["route"])
    path = tmp / "alertmanager.yml"
    with path.open("w") as fh:
        yaml.dump(doc, fh)
    return path


async def start_alertmanager(procs: Processes, tmp: Path, webhook: Webhook) -> str:
    port = free_port()
    config = render_alertmanager(tmp, webhook)
    procs.start(
        [
            str(ALERTMANAGER),
            f"--config.file={config}",
            f"--storage.path={tmp / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no HA gossip port
        ],
        tmp / "alertmanager.log",
    )
    url = f"http://127.0.0.1:{port}"
    await wait_ready(url + "/-/ready")
    return url


def render_prometheus(tmp: Path, worker_port: int, exporter_port: int, am_port: int) -> Path:
    """The project's prometheus.yml pointed at the test's ports (1 s intervals), and a copy of the
    rules whose only change is StreamOrchConsumerStalled's ``for``."""
    yaml = YAML()
    yaml.preserve_quotes = True
    rules = yaml.load(RULES.read_text())
    original = YAML(typ="safe").load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == STALLED:
                rule["for"] = STALLED_FOR
    rules_path = tmp / "alerts.yml"
    with rules_path.open("w") as fh:
        yaml.dump(rules, fh)
    copied = YAML(typ="safe").load(rules_path.read_text())
    exprs = [[r["expr"] for r in g["rules"]] for g in original["groups"]]
    assert [[r["expr"] for r in g["rules"]] for g in copied["groups"]] == exprs

    config = yaml.load(PROM_CONFIG.read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config["global"]["scrape_timeout"] = "1s"
    config["rule_files"] = [str(rules_path)]
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{am_port}"]
    ports = {"stream-orch": worker_port, "stream-orch-lag": exporter_port}
    config["scrape_configs"] = [job for job in config["scrape_configs"] if job["job_name"] in ports]
    for job in config["scrape_configs"]:
        job["static_configs"][0]["targets"] = [f"127.0.0.1:{ports[job['job_name']]}"]
    path = tmp / "prometheus.yml"
    with path.open("w") as fh:
        yaml.dump(config, fh)
    return path


async def start_prometheus(
    procs: Processes, tmp: Path, worker_port: int, exporter_port: int, am_url: str
) -> str:
    port = free_port()
    config = render_prometheus(tmp, worker_port, exporter_port, int(am_url.rsplit(":", 1)[1]))
    procs.start(
        [
            str(PROMETHEUS),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        tmp / "prometheus.log",
    )
    url = f"http://127.0.0.1:{port}"
    await wait_ready(url + "/-/ready")
    return url


async def prom_query(prom: str, expr: str) -> list[dict[str, Any]]:
    timeout = aiohttp.ClientTimeout(total=5)
    params = {"query": expr}
    async with (
        aiohttp.ClientSession(timeout=timeout) as s,
        s.get(prom + "/api/v1/query", params=params) as resp,
    ):
        body = await resp.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


async def prom_alert(prom: str, alertname: str, **labels: str) -> dict[str, Any] | None:
    body = await get_json(prom + "/api/v1/alerts")
    for alert in body["data"]["alerts"]:
        if alert["labels"].get("alertname") == alertname and labels.items() <= alert["labels"].items():
            return alert
    return None


async def am_alerts(am: str, alertname: str) -> list[dict[str, Any]]:
    return await get_json(am + f'/api/v2/alerts?filter=alertname="{alertname}"')


async def produce_json(topic: str, per_partition: dict[int, list[dict]], key: bytes | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
    await producer.start()
    try:
        for p, values in per_partition.items():
            for v in values:
                await producer.send_and_wait(topic, orjson.dumps(v), key=key or str(p).encode(), partition=p)
    finally:
        await producer.stop()


def group_rows(samples: dict, group: str) -> dict[tuple[str, str], float]:
    return {
        (dict(lab)["partition"], name): v
        for (name, lab), v in samples.items()
        if dict(lab).get("group") == group and name == "stream_orch_consumer_lag_records"
    }


# ------------------------------------------------------------- 1. a stopped worker pages, resolves


async def test_stalled_worker_pages_through_prometheus_and_alertmanager_then_resolves(
    tmp_path: Path, procs: Processes, webhook: Webhook
) -> None:
    suffix = uuid.uuid4().hex[:8]
    topology, names = isolated_topology(FORWARD, tmp_path, suffix)
    group = f"obs_forward_{suffix}.forward"
    topic = names["obs.in"]
    worker = WorkerProcess(
        topology, tmp_path / "worker.log", env={"PYTHONPATH": str(REPO)}, metrics_port=free_port()
    )
    am = await start_alertmanager(procs, tmp_path, webhook)
    worker.start()
    try:
        await wait_for_group(group, timeout=40)
        await produce_json(topic, {p: [{"i": i} for i in range(10)] for p in (0, 1)})

        async def caught_up() -> bool:
            try:
                rows = group_rows(await scrape(worker.url), group)
            except (aiohttp.ClientError, OSError, TimeoutError):
                return False
            return len(rows) == 2 and all(v == 0 for v in rows.values())

        await wait_until(caught_up, 40, "the worker to process the first records")

        exporter_port = free_port()
        procs.start(
            [
                sys.executable,
                "-m",
                "stream_orch.cli.main",
                "--bootstrap-servers",
                BOOTSTRAP,
                "lag",
                "--exporter",
                "--host",
                "127.0.0.1",
                "--port",
                str(exporter_port),
                "--interval",
                "1",
                "--window",
                "5",
                "--min-stop",
                "3",
                "--group",
                group,
            ],
            tmp_path / "exporter.log",
        )
        prom = await start_prometheus(procs, tmp_path, worker.metrics_port, exporter_port, am)

        async def both_sources_ok() -> bool:
            rows = await prom_query(prom, f'stream_orch_consumer_group_status{{group="{group}"}}')
            return sorted((r["metric"]["job"], r["value"][1]) for r in rows) == [
                ("stream-orch", "0"),
                ("stream-orch-lag", "0"),
            ]

        await wait_until(both_sources_ok, 30, "status ok from the worker and the exporter in Prometheus")
        assert await prom_alert(prom, STALLED, group=group) is None

        # --- the worker stops under lag
        assert worker.proc is not None
        worker.proc.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        await produce_json(topic, {p: [{"i": i} for i in range(10, 30)] for p in (0, 1)})

        pending = await wait_until(lambda: _alert_in_state(prom, group, "pending"), 60, f"{STALLED} pending")
        t_pending = time.monotonic() - stopped
        firing = await wait_until(lambda: _alert_in_state(prom, group, "firing"), 30, f"{STALLED} firing")
        t_firing = time.monotonic() - stopped

        # what Prometheus sees meanwhile: the frozen worker's scrape is down (once a scrape has
        # timed out: a stopped process still has its socket, so that takes a scrape timeout and
        # may come after the alert went pending), its own series are gone, and the stop status
        # comes from the exporter alone
        async def worker_scrape_down() -> list | None:
            up = await prom_query(prom, 'up{job="stream-orch"}')
            return up if [r["value"][1] for r in up] == ["0"] else None

        await wait_until(worker_scrape_down, 20, "up == 0 for the frozen worker")
        own = await prom_query(
            prom, f'stream_orch_consumer_group_status{{job="stream-orch",group="{group}"}}'
        )
        outside = await prom_query(
            prom, f'stream_orch_consumer_group_status{{job="stream-orch-lag",group="{group}"}}'
        )
        assert own == [], own
        assert [r["value"][1] for r in outside] == ["2"], outside
        assert (
            pending["labels"]
            == firing["labels"]
            == {
                "alertname": STALLED,
                "group": group,
                "topology": f"obs_forward_{suffix}",
                "severity": "critical",
            }
        )

        async def in_alertmanager() -> dict | None:
            alerts = [a for a in await am_alerts(am, STALLED) if a["labels"].get("group") == group]
            return alerts[0] if alerts and alerts[0]["status"]["state"] == "active" else None

        managed = await wait_until(in_alertmanager, 20, "the alert active in Alertmanager")
        assert [r["name"] for r in managed["receivers"]] == ["pager"]
        paged = await wait_until(
            lambda: _notified(webhook, "pager", "firing", group), 20, "the pager webhook to be called"
        )
        t_paged = time.monotonic() - stopped
        assert paged[2]["receiver"] == "pager"
        assert webhook.notifications("ticket", group=group) == []
        assert webhook.notifications("fraud-pager", group=group) == []

        # --- the worker resumes, catches up: resolved everywhere
        worker.proc.send_signal(signal.SIGCONT)
        resumed = time.monotonic()
        await wait_until(caught_up, 40, "the worker to catch up after SIGCONT")
        await wait_until(
            lambda: _gone(prom, group), 60, f"{STALLED} to leave Prometheus' alerts", interval=0.5
        )
        t_resolved_prom = time.monotonic() - resumed
        await wait_until(
            lambda: _notified(webhook, "pager", "resolved", group), 30, "the resolved notification"
        )
        t_resolved_hook = time.monotonic() - resumed
        active = [
            a
            for a in await am_alerts(am, STALLED)
            if a["labels"].get("group") == group and a["status"]["state"] == "active"
        ]
        assert active == []
        assert len(webhook.notifications("pager", group=group)) == 2  # one page, one all-clear
        print(
            f"after SIGSTOP: pending {t_pending:.1f}s, firing {t_firing:.1f}s, paged {t_paged:.1f}s; "
            f"after SIGCONT: resolved in Prometheus {t_resolved_prom:.1f}s, "
            f"resolved notification {t_resolved_hook:.1f}s"
        )
        assert worker.terminate() == 0
    except BaseException:
        print(procs.logs())
        print(worker.log())
        raise
    finally:
        if worker.proc is not None and worker.proc.poll() is None:
            worker.proc.send_signal(signal.SIGCONT)
        worker.stop()


async def _alert_in_state(prom: str, group: str, state: str) -> dict | None:
    alert = await prom_alert(prom, STALLED, group=group)
    return alert if alert and alert["state"] == state else None


async def _gone(prom: str, group: str) -> bool:
    return await prom_alert(prom, STALLED, group=group) is None


async def _notified(hook: Webhook, receiver: str, status: str, group: str) -> tuple | None:
    for item in hook.notifications(receiver, group=group):
        if item[2]["status"] == status:
            return item
    return None


# ------------------------------------------------------------ 2. a cluster-wide stall pages once


def _alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
    now = time.time()
    return {
        "labels": {"alertname": name, "severity": severity, **labels},
        "annotations": {"summary": name},
        "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 5)),
    }


async def test_a_cluster_wide_stall_pages_once_not_once_per_group(
    tmp_path: Path, procs: Processes, webhook: Webhook
) -> None:
    """What Prometheus sends when a stalled broker stops every group (the rule unit tests show
    these fire together): Alertmanager pages StreamOrchManyGroupsStalled and inhibits the rest."""
    am = await start_alertmanager(procs, tmp_path, webhook)
    run = uuid.uuid4().hex[:6]
    groups = [f"fraud_detection_{run}.score_transactions", f"recon_{run}.match", f"recon_{run}.report"]
    per_group = [_alert(STALLED, "critical", group=g, topology=g.split(".")[0], run=run) for g in groups] + [
        _alert("StreamOrchLagAboveSLO", "critical", group=groups[1], topic="payments", run=run)
    ]
    cluster = _alert("StreamOrchManyGroupsStalled", "critical", run=run)
    await post_json(am + "/api/v2/alerts", [cluster])
    await asyncio.sleep(0.5)  # Prometheus evaluates both rules in one group; the order is not guaranteed
    await post_json(am + "/api/v2/alerts", per_group)

    async def settled() -> list | None:
        alerts = [a for a in await get_json(am + "/api/v2/alerts") if a["labels"].get("run") == run]
        return alerts if len(alerts) == 5 else None

    alerts = await wait_until(settled, 10, "five alerts in Alertmanager")
    await asyncio.sleep(4)  # group_wait 1s, group_interval 2s: anything not inhibited would be sent
    alerts = await settled()
    assert alerts is not None
    by_name = {(a["labels"]["alertname"], a["labels"].get("group")): a["status"] for a in alerts}
    source = by_name[("StreamOrchManyGroupsStalled", None)]
    assert source["state"] == "active" and source["inhibitedBy"] == []
    for key, status in by_name.items():
        if key[0] != "StreamOrchManyGroupsStalled":
            assert status["state"] == "suppressed" and status["inhibitedBy"], (key, status)
    sent = [(r, a["labels"]["alertname"]) for _, r, p in webhook.received for a in p["alerts"]]
    assert sent == [("pager", "StreamOrchManyGroupsStalled")], webhook.received


# ------------------------------------------------- 3. fraud.alerts records reach the same pager


async def test_alerts_forward_turns_fraud_alert_records_into_pages_once_per_key(
    tmp_path: Path, procs: Processes, webhook: Webhook
) -> None:
    am = await start_alertmanager(procs, tmp_path, webhook)
    suffix = uuid.uuid4().hex[:8]
    topic = f"fraud.alerts.{suffix}"
    group = f"stream-orch-alerts.test.{suffix}"

    def fraud_alert(txn: str, severity: str, score: float) -> dict[str, Any]:
        return {
            "txn_id": txn,
            "account_id": "A-1",
            "customer_id": "C-000001",
            "amount_eur": 12000.0,
            "score": score,
            "severity": severity,
            "reasons": ["amount_over_5x_average"],
            "ts": int(time.time() * 1000),
        }

    await produce_json(topic, {0: [fraud_alert("t-crit", "critical", 0.97)]}, key=b"A-1")
    env = {**os.environ, "STREAM_ORCH_BOOTSTRAP_SERVERS": BOOTSTRAP}
    bridge = procs.start(
        [
            sys.executable,
            "-m",
            "stream_orch.cli.main",
            "alerts",
            "forward",
            "--topic",
            topic,
            "--alertmanager",
            am,
            "--labels",
            "account_id,customer_id",
            "--key-field",
            "txn_id",
            "--alertname",
            "FraudAlert",
            "--summary",
            "{severity} fraud alert on {account_id}: score {score}",
            "--group",
            group,
            "--from",
            "earliest",
        ],
        tmp_path / "bridge.log",
        env=env,
    )
    try:
        first = await wait_until(
            lambda: _fraud_notified(webhook, "fraud-pager", "t-crit"), 40, "the fraud pager to be called"
        )
        alert = next(a for a in first[2]["alerts"] if a["labels"]["alert_key"] == "t-crit")
        assert alert["labels"] == {
            "alertname": "FraudAlert",
            "topic": topic,
            "account_id": "A-1",
            "customer_id": "C-000001",
            "severity": "critical",
            "alert_key": "t-crit",
        }
        assert alert["annotations"]["summary"] == "critical fraud alert on A-1: score 0.97"
        assert alert["annotations"]["kafka_record"] == f"{topic}/0@0"

        # the same key again (a replay, a re-scored transaction) and a high one
        await produce_json(
            topic,
            {0: [fraud_alert("t-crit", "critical", 0.99), fraud_alert("t-high", "high", 0.85)]},
            key=b"A-1",
        )
        await wait_until(
            lambda: _fraud_notified(webhook, "ticket", "t-high"), 30, "the ticket for the high alert"
        )
        await asyncio.sleep(5)  # two more group intervals: a second page for t-crit would be here

        async def committed() -> bool:
            from aiokafka.admin import AIOKafkaAdminClient

            admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
            await admin.start()
            try:
                offsets = await admin.list_consumer_group_offsets(group)
            finally:
                await admin.close()
            return {tp.partition: om.offset for tp, om in offsets.items()} == {0: 3}

        await wait_until(committed, 20, "the bridge to commit all three records")
        pages = [p for p in webhook.notifications(alert_key="t-crit")]
        assert [r for _, r, _ in pages] == ["fraud-pager"], pages  # paged once
        assert [r for _, r, _ in webhook.notifications(alert_key="t-high")] == ["ticket"]
        in_am = {a["labels"]["alert_key"]: a for a in await am_alerts(am, "FraudAlert")}
        assert set(in_am) == {"t-crit", "t-high"}
        assert [r["name"] for r in in_am["t-crit"]["receivers"]] == ["fraud-pager"]
        assert in_am["t-high"]["labels"]["severity"] == "warning"  # high -> warning (--severity-map)

        bridge.send_signal(signal.SIGTERM)
        assert bridge.wait(20) == 0
        out = (tmp_path / "bridge.log").read_text()
        assert "stopped: 3 records" in out, out
    except BaseException:
        print(procs.logs())
        raise


async def _fraud_notified(hook: Webhook, receiver: str, key: str) -> tuple | None:
    found = hook.notifications(receiver, alert_key=key)
    return found[0] if found else None
