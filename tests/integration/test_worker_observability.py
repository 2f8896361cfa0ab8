"""Observability of REAL worker processes (``stream-orch run``) on the real broker.

The "done when" of the observability issue, end to end:

* the lag in records on a running worker's ``/metrics`` matches Kafka's own ``ConsumerGroupCommand
  --describe`` while the worker is under load, within what moved between the reads;
* lag in seconds rises while a worker is stopped (SIGSTOP), status shows stop, and both return to
  0 / ok once it has caught up (seen through the standalone ``stream-orch lag --exporter``, since a
  stopped worker cannot answer a scrape);
* a node whose agent is stuck makes ``/health`` 503; a node whose agent dies ends the worker (exit 1);
* every metric the Grafana dashboard and the alert rules query is on a running worker's ``/metrics``;
* ``--log-json`` error lines carry node, topic, partition and offset.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests import reliability_harness as rh
from tests.kafka_tool import describe, kafka_jars_fixture  # noqa: F401 - the kafka_jars fixture
from tests.topology_harness import (
    BOOTSTRAP,
    REPO,
    Samples,
    WorkerProcess,
    collect,
    free_port,
    isolated_topology,
    produce_raw,
    scrape,
    wait_for_group,
)

pytestmark = pytest.mark.integration

FORWARD = REPO / "tests" / "fixtures" / "topologies" / "obs_forward.yaml"
LAG_FAMILIES = (
    "stream_orch_consumer_lag_records",
    "stream_orch_consumer_lag_seconds",
    "stream_orch_consumer_committed_offset",
    "stream_orch_consumer_log_end_offset",
    "stream_orch_partition_status",
    "stream_orch_consumer_group_status",
)
STOP = 2  # stream_orch_partition_status / consumer_group_status code of "stop"

Offsets = dict[tuple[str, int], tuple[int, int, int]]  # (topic, partition) -> (committed, end, lag)


# ---------------------------------------------------------------------------------------- helpers


async def get(url: str) -> tuple[int, str]:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as s, s.get(url) as resp:
        return resp.status, await resp.text()


async def wait_http(base: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await get(base + "/metrics")
            return
        except (aiohttp.ClientError, OSError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


def group_offsets(samples: Samples, group: str) -> Offsets:
    """The lag snapshot of ``group`` as the worker (or exporter) exports it."""
    out: dict[tuple[str, int], list[int]] = {}
    index = {
        "stream_orch_consumer_committed_offset": 0,
        "stream_orch_consumer_log_end_offset": 1,
        "stream_orch_consumer_lag_records": 2,
    }
    for (name, labels), value in samples.items():
        lab = dict(labels)
        if name in index and lab.get("group") == group:
            out.setdefault((lab["topic"], int(lab["partition"])), [0, 0, 0])[index[name]] = int(value)
    return {k: (c, e, lag) for k, (c, e, lag) in out.items()}


def gauge(samples: Samples, name: str, **labels: str) -> list[float]:
    return [v for (n, lab), v in samples.items() if n == name and labels.items() <= dict(lab).items()]


async def wait_until(check, timeout: float, what: str, interval: float = 0.5):
    """Re-evaluate the async ``check()`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


async def produce_json(topic: str, per_partition: dict[int, list[dict]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=5, acks="all")
    await producer.start()
    try:
        futures = [
            await producer.send(topic, orjson.dumps(v), key=str(p).encode(), partition=p)
            for p, values in per_partition.items()
            for v in values
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def create_topic(name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


def forward_worker(tmp_path: Path, **env: str) -> tuple[WorkerProcess, dict[str, str], str]:
    suffix = uuid.uuid4().hex[:8]
    path, names = isolated_topology(FORWARD, tmp_path, suffix)
    worker = WorkerProcess(
        path,
        tmp_path / "worker.log",
        env=env,  # obs_steps.py is found through the topology's python_paths
        metrics_port=free_port(),
    )
    return worker, names, f"obs_forward_{suffix}.forward"


@pytest.fixture
def workers():
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        if w.proc is not None and w.proc.poll() is None:
            w.proc.send_signal(signal.SIGCONT)  # in case a test left it stopped
        w.stop()


# ------------------------------------------------------------------- 1. lag matches the Kafka tool


async def test_worker_lag_on_metrics_matches_kafka_consumer_groups_tool_under_load(
    tmp_path: Path, workers: list[WorkerProcess], kafka_jars: Path
) -> None:
    """Under load the worker keeps consuming and the producer keeps producing, so the check is a
    bracket: the tool's committed and end offsets lie between two worker snapshots taken before and
    after it, so its lag differs from either snapshot by at most what moved in between (the records
    in flight). When nothing moves (caught up; or stuck on a record with lag 11) they agree exactly."""
    worker, t, group = forward_worker(tmp_path)
    workers.append(worker)
    topic = t["obs.in"]
    # a backlog the worker drains at ~125 records/s (batches of 50 sleeping 0.4 s together)
    slow = {"slow_ms": 400}
    await create_topic(topic, 2)  # before the worker, which would create it: the backlog goes first
    await produce_json(topic, {p: [{"i": i, **slow} for i in range(300)] for p in (0, 1)})
    worker.start("--stop-timeout", "2")
    await wait_http(worker.url)

    producing = asyncio.Event()
    producing.set()

    async def load() -> None:  # 100 more records/s while we compare: the lag keeps moving
        i = 0
        while producing.is_set():
            await produce_json(topic, {p: [{"j": i + k, **slow} for k in range(25)] for p in (0, 1)})
            i += 25
            await asyncio.sleep(0.5)

    loader = asyncio.create_task(load())
    try:

        async def lagging_snapshot() -> Offsets | None:
            rows = group_offsets(await scrape(worker.url), group)
            return rows if len(rows) == 2 and all(lag > 0 for _, _, lag in rows.values()) else None

        m1 = await wait_until(lagging_snapshot, 40, "the worker's first lag poll after a commit")
        tool = await asyncio.to_thread(describe, kafka_jars, group)

        # two fresh worker polls after the tool's read: the second one started after it finished
        async def changed(since: Offsets):
            rows = group_offsets(await scrape(worker.url), group)
            return rows if rows != since else None

        after_tool = group_offsets(await scrape(worker.url), group)
        m_mid = await wait_until(lambda: changed(after_tool), 15, "a new worker lag poll")
        m2 = await wait_until(lambda: changed(m_mid), 15, "a second worker lag poll")
    finally:
        producing.clear()
        await loader

    print(f"metrics before: {m1}\ntool: {tool}\nmetrics after: {m2}")
    assert set(tool) == set(m1) == set(m2) == {(topic, 0), (topic, 1)}, worker.log()
    for tp, (ct, et, lt) in tool.items():
        c1, e1, l1 = m1[tp]
        c2, e2, l2 = m2[tp]
        assert (l1, l2, lt) == (e1 - c1, e2 - c2, et - ct)
        assert c1 <= ct <= c2 and e1 <= et <= e2, (tp, m1[tp], tool[tp], m2[tp])
        in_flight = (c2 - c1) + (e2 - e1)
        assert abs(lt - l1) <= in_flight and abs(lt - l2) <= in_flight
        assert lt > 0  # under load: behind, and moving
    assert any(m2[tp][0] > m1[tp][0] for tp in tool), "the worker made no progress between the reads"
    assert any(m2[tp][1] > m1[tp][1] for tp in tool), "nothing was produced between the reads"

    # producing stopped: once caught up, worker metrics and the tool agree exactly, lag 0
    async def caught_up() -> Offsets | None:
        rows = group_offsets(await scrape(worker.url), group)
        return rows if rows and all(lag == 0 for _, _, lag in rows.values()) else None

    final = await wait_until(caught_up, 45, "the worker to catch up", interval=1.0)
    assert await asyncio.to_thread(describe, kafka_jars, group) == final
    samples = await scrape(worker.url)
    assert gauge(samples, "stream_orch_consumer_lag_seconds", group=group) == [0.0, 0.0]

    # and exactly, with lag > 0: the node hangs on a record of partition 0, 10 more queue behind it
    await produce_json(topic, {0: [{"hang": True}, *({"k": k} for k in range(10))]})

    async def stuck() -> Offsets | None:
        rows = group_offsets(await scrape(worker.url), group)
        return rows if rows.get((topic, 0), (0, 0, 0))[2] == 11 else None

    held = await wait_until(stuck, 15, "the worker's lag poll to see the stuck partition")
    assert await asyncio.to_thread(describe, kafka_jars, group) == held
    assert held[(topic, 1)][2] == 0
    worker.terminate(timeout=20)  # the hung batch is cancelled after --stop-timeout


# ------------------------------------------------------ 2. stopped worker: lag seconds rise, "stop"


async def test_stopped_worker_lag_seconds_rise_status_stop_then_back_to_zero(
    tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    worker, t, group = forward_worker(tmp_path)
    workers.append(worker)
    topic = t["obs.in"]
    worker.start()
    await wait_for_group(group, timeout=40)
    await produce_json(topic, {p: [{"i": i} for i in range(20)] for p in (0, 1)})
    await wait_until(
        lambda: _worker_caught_up(worker.url, group, 20), 30, "the worker to process the first records"
    )

    port = free_port()
    exporter = subprocess.Popen(
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
            str(port),
            "--interval",
            "1",
            "--window",
            "5",
            "--min-stop",
            "3",
            "--group",
            group,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_http(url)
        ok = await scrape(url)
        assert gauge(ok, "stream_orch_consumer_lag_records", group=group) == [0.0, 0.0]
        assert gauge(ok, "stream_orch_consumer_lag_seconds", group=group) == [0.0, 0.0]

        worker.proc.send_signal(signal.SIGSTOP)  # paused: no fetch, no commit, no heartbeat
        stopped_at = time.time()
        await produce_json(topic, {p: [{"i": i} for i in range(20, 50)] for p in (0, 1)})
        written_at = time.time()

        async def behind() -> Samples | None:
            s = await scrape(url)
            return s if gauge(s, "stream_orch_consumer_lag_records", group=group) == [30.0, 30.0] else None

        first = await wait_until(behind, 10, "the exporter to see the new records")
        await asyncio.sleep(2.5)
        later = await wait_until(
            lambda: _status_is(url, group, STOP), 10, "status stop while the worker is stopped"
        )
        s1 = gauge(first, "stream_orch_consumer_lag_seconds", group=group)
        s2 = gauge(later, "stream_orch_consumer_lag_seconds", group=group)
        print(f"lag seconds while stopped: {s1} then {s2}")
        assert all(0 <= a <= time.time() - stopped_at + 1 for a in s1)
        assert all(b >= a + 2.0 for a, b in zip(s1, s2, strict=True))  # rising with the clock
        assert all(b >= time.time() - written_at - 2.0 for b in s2)  # the oldest unprocessed record's age
        assert gauge(later, "stream_orch_consumer_group_status", group=group) == [STOP]

        worker.proc.send_signal(signal.SIGCONT)  # resumes, catches up
        done = await wait_until(
            lambda: _exporter_caught_up(url, group), 40, "lag 0 and status ok after resuming"
        )
        assert gauge(done, "stream_orch_consumer_lag_seconds", group=group) == [0.0, 0.0]
        assert gauge(done, "stream_orch_partition_status", group=group) == [0.0, 0.0]
        assert gauge(done, "stream_orch_consumer_group_status", group=group) == [0.0]
    finally:
        exporter.terminate()
        try:
            exporter.wait(10)
        except subprocess.TimeoutExpired:
            exporter.kill()
            exporter.wait(5)
    assert worker.terminate() == 0


async def _worker_caught_up(url: str, group: str, n: int) -> bool:
    rows = group_offsets(await scrape(url), group)
    return len(rows) == 2 and all(c == n and lag == 0 for c, _, lag in rows.values())


async def _status_is(url: str, group: str, code: int) -> Samples | None:
    s = await scrape(url)
    return s if gauge(s, "stream_orch_partition_status", group=group) == [code, code] else None


async def _exporter_caught_up(url: str, group: str) -> Samples | None:
    s = await scrape(url)
    lag = gauge(s, "stream_orch_consumer_lag_records", group=group)
    status = gauge(s, "stream_orch_consumer_group_status", group=group)
    return s if lag == [0.0, 0.0] and status == [0.0] else None


# ----------------------------------------------------------------- 3. a dead or stuck agent: /health


async def test_stuck_agent_fails_health_after_stall_seconds(
    tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    """The node's agent hangs on a record (an await that never returns) while records queue behind
    it: the process and its event loop are fine, the node is not. With lag > 0 and no progress for
    STREAM_ORCH_HEALTH_STALL_SECONDS, /health turns 503 and names the node."""
    worker, t, group = forward_worker(tmp_path, STREAM_ORCH_HEALTH_STALL_SECONDS="3")
    workers.append(worker)
    topic = t["obs.in"]
    worker.start("--stop-timeout", "2")
    await wait_for_group(group, timeout=40)
    await produce_json(topic, {p: [{"i": i} for i in range(10)] for p in (0, 1)})
    await wait_until(lambda: _worker_caught_up(worker.url, group, 10), 30, "the first records processed")
    status, body = await get(worker.url + "/health")
    assert status == 200, body
    assert (await get(worker.url + "/ready"))[0] == 200

    await produce_json(topic, {0: [{"hang": True}, *({"i": i} for i in range(10, 20))]})
    hung_at = time.monotonic()

    async def unhealthy() -> dict | None:
        status, text = await get(worker.url + "/health")
        return json.loads(text) if status == 503 else None

    body = await wait_until(unhealthy, 25, "/health 503 for the stuck node")
    assert time.monotonic() - hung_at >= 3.0  # not before the configured stall time
    assert body["status"] == "fail"
    assert body["stalled"]["forward"]["lag_records"] == 11
    idle = body["stalled"]["forward"]["seconds_without_progress"]
    assert idle > 3.0
    assert body["reasons"] == [f"node forward has lag 11 and no progress for {idle:.0f}s"]
    assert body["tasks"] == {"forward": "running"}  # the task lives: only stall detection catches this
    worker.terminate(timeout=20)  # the stuck batch is cancelled after --stop-timeout


async def test_dead_agent_ends_the_worker_with_exit_1(tmp_path: Path, workers: list[WorkerProcess]) -> None:
    """An error the node does not catch (a BaseException that is not an Exception) ends the node's
    task. The worker does not linger half-alive: it logs which node died, shuts down and exits 1,
    so /health stops answering and the supervisor restarts it."""
    worker, t, group = forward_worker(tmp_path)
    workers.append(worker)
    worker.start(global_args=("--log-json",))
    await wait_for_group(group, timeout=40)
    assert (await get(worker.url + "/health"))[0] == 200
    await produce_json(t["obs.in"], {1: [{"die": True}]})
    rc = await asyncio.to_thread(worker.proc.wait, 30)
    assert rc == 1, worker.log()
    with pytest.raises((aiohttp.ClientError, OSError)):
        await get(worker.url + "/health")
    lines = _json_lines(worker.log())
    crashed = [ln for ln in lines if ln["logger"] == "stream_orch.observability.health"]
    assert [(ln["level"], ln["node"]) for ln in crashed] == [("ERROR", "forward")], worker.log()
    assert crashed[0]["message"] == "agent task forward crashed: AgentDied: the agent died"
    died = [ln for ln in lines if ln["logger"] == "stream_orch.runtime.worker" and ln["level"] == "ERROR"]
    assert len(died) == 1, worker.log()
    assert died[0]["node"] == "forward" and died[0]["topic"] == t["obs.in"]
    assert "AgentDied" in died[0]["message"]


# ------------------------------------- 4. every metric the dashboard and alerts query; 5. JSON logs


METRIC = re.compile(r"\bstream_orch_\w+")


def queried_series() -> set[str]:
    """Series names (as PromQL spells them: _total, _bucket) in the dashboards and the alert rules."""
    texts = [(REPO / "deploy" / "prometheus" / "alerts.yml").read_text()]
    for path in sorted((REPO / "deploy" / "grafana" / "dashboards").glob("*.json")):
        dash = json.loads(path.read_text())
        texts += [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
        texts += [v["query"]["query"] for v in dash["templating"]["list"] if isinstance(v.get("query"), dict)]
    return {name for text in texts for name in METRIC.findall(text)}


def _json_lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


async def test_every_dashboard_and_alert_metric_is_on_a_running_worker(
    tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    """The reference fraud topology (it has tables) processes good, invalid (DLQ) and late-profile
    (retried, then DLQ) transactions; then one scrape of its /metrics must hold every series the
    Grafana dashboard and the Prometheus rules query, including the lag families the worker's own
    lag collector exports. Its --log-json lines for dead letters carry node/topic/partition/offset."""
    suffix = uuid.uuid4().hex[:8]
    path, t = isolated_topology(
        REPO / "topologies" / "fraud_detection.yaml", tmp_path, suffix, retry_delays=["200ms"]
    )
    group = f"fraud_detection_{suffix}.score_transactions"
    worker = WorkerProcess(
        path, tmp_path / "worker.log", env={"STREAM_ORCH_MASK_KEY": "s"}, metrics_port=free_port()
    )
    workers.append(worker)
    worker.start(global_args=("--log-json",))
    await wait_for_group(group, timeout=40)
    profile = {
        "customer_id": "C-000001",
        "name": "N",
        "email": "e@example.com",
        "home_country": "DE",
        "risk_tier": "low",
        "avg_amount": 10.0,
    }
    await produce_raw(t["customers"], [(b"C-000001", orjson.dumps(profile))])
    assert await rh.global_table_loaded([worker.url], t["customers.clean"], 1), worker.log()

    def txn(txn_id: str, customer: str, amount: object) -> tuple[bytes, bytes]:
        value = {
            "txn_id": txn_id,
            "account_id": "A-1",
            "customer_id": customer,
            "amount": amount,
            "currency": "EUR",
            "merchant_id": "M",
            "channel": "online",
            "country": "DE",
            "ts": int(time.time() * 1000),
        }
        return b"A-1", orjson.dumps(value)

    await produce_raw(
        t["transactions"],
        [
            txn("ok-1", "C-000001", 5),
            txn("ok-1", "C-000001", 5),  # duplicate: dropped
            txn("big", "C-000001", 5000),  # alert + action
            txn("bad", "C-000001", -1),  # invalid: DLQ
            txn("late", "C-000099", 5),  # unknown customer: retried, then DLQ
        ],
    )
    dlq = t["transactions.dlq"]
    await collect([dlq], until=lambda s: len(s[dlq]) >= 2, timeout=40, settle=0)

    async def with_lag() -> Samples | None:  # the worker's lag collector polls every 5 s
        s = await scrape(worker.url)
        rows = group_offsets(s, group)
        ok = rows and all(lag == 0 for _, _, lag in rows.values())
        # the DLQ's records can be read a moment before the batch that wrote them is counted
        # (the fresh-clone CI scraped 1 of the 2 once): the assertions below check the exact sums
        counted = sum(gauge(s, "stream_orch_dead_lettered_total", node="score_transactions")) >= 2
        stable = gauge(s, "stream_orch_consumer_group_status", group=group) == [0.0]
        return s if ok and counted and stable else None

    samples = await wait_until(with_lag, 20, "a lag poll after the worker caught up")
    exported = {name for name, _ in samples}
    queried = queried_series()
    assert len(queried) >= 15
    missing = queried - exported
    assert not missing, f"queried but not on the worker's /metrics: {sorted(missing)}"
    for family in LAG_FAMILIES:
        assert gauge(samples, family, group=group), f"{family} missing for the worker's own group"
    node = "score_transactions"
    assert gauge(samples, "stream_orch_dead_lettered_total", node=node) != []
    assert sum(gauge(samples, "stream_orch_retries_total", node=node, tier="1")) == 1
    assert sum(gauge(samples, "stream_orch_dead_lettered_total", node=node)) == 2
    assert sum(gauge(samples, "stream_orch_events_dropped_total", node=node)) == 1
    # table sizes follow the batches: 2 txn_ids kept by dedupe (ok-1, big) and their 2 time-index
    # entries, both in account A-1's window
    assert gauge(samples, "stream_orch_table_entries", node=node, table="seen_txns") == [4.0]
    assert gauge(samples, "stream_orch_table_entries", node=node, table="account_velocity") == [1.0]
    # the partitions the group gave the node: the input's 6 and its one retry tier's 6 (it used to
    # show the assignment before this one: 0 at the start)
    assert gauge(samples, "stream_orch_assigned_partitions", node=node) == [12.0]

    assert worker.terminate() == 0
    lines = _json_lines(worker.log())
    assert lines and all({"ts", "level", "logger", "message"} <= set(ln) for ln in lines)
    dead = [ln for ln in lines if ln["message"].startswith("dead-lettered")]
    assert len(dead) == 2, worker.log()
    for ln in dead:
        assert ln["level"] == "WARNING"
        assert ln["node"] == node and ln["topic"] == t["transactions"]
        assert isinstance(ln["partition"], int) and isinstance(ln["offset"], int)
    problems = [
        ln for ln in lines if ln["level"] in ("WARNING", "ERROR") and ln["logger"].startswith("stream_orch")
    ]
    for ln in problems:
        assert "node" in ln, f"error line without its node: {ln}"


async def test_sigusr1_prints_tasks_and_each_node_s_group_view_and_the_worker_carries_on(
    tmp_path: Path,
) -> None:
    worker, names, group = forward_worker(tmp_path)
    worker.start()
    try:
        await wait_for_group(group)
        assert worker.proc is not None
        dump: list[dict] = []
        # the node takes its assignment over in its loop right after the group settles: ask
        # again until a dump shows the partitions owned
        for _ in range(10):
            worker.proc.send_signal(signal.SIGUSR1)
            for _ in range(10):
                await asyncio.sleep(0.1)
                text = worker.log_path.read_text(errors="replace")
                dump = [json.loads(line) for line in text.splitlines() if line.startswith('{"node": ')]
                if dump:
                    break
            if dump and dump[-1]["assigned"]:
                break
        dump = dump[-1:]
        assert "asyncio tasks ---" in text and "task node:forward:" in text, worker.log()
        [node] = dump
        assert node["node"] == "forward" and node["restarts"] == 0
        assert node["generation"] >= 1 and node["member_id"]
        assert any(p.startswith(names["obs.in"]) for p in node["assigned"]), node
        assert worker.proc.poll() is None, "the worker must carry on after the dump"
        assert worker.terminate() == 0
    finally:
        worker.stop()
