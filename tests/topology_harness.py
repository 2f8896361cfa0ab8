"""Run a topology as a real worker process against the real broker, isolated per test.

Every test gets its own copy of the topology with the topology name and every topic renamed
(suffix), so tests never share topics, consumer groups or changelogs.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from ruamel.yaml import YAML

from stream_orch.transport.metadata import wait_for_metadata

REPO = Path(__file__).resolve().parents[1]
BOOTSTRAP = os.environ.get("STREAM_ORCH_BOOTSTRAP_SERVERS", "127.0.0.1:9092")

# Every topic the fraud topology's score_transactions node writes (names before isolation).
FRAUD_OUTPUTS = [
    "transactions.enriched",
    "fraud.alerts",
    "account.actions",
    "fraud.review",
    "transactions.approved",
    "transactions.dlq",
]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]  # (name, sorted labels) -> value


#: the suffixes of the topology copies made during the current test: tests/conftest.py deletes
#: every topic holding one of them after the test (also when it failed)
ISOLATED: list[str] = []


def isolated_topology(
    src: Path,
    out_dir: Path,
    suffix: str,
    *,
    retry_delays: list[str] | None = None,
    processing: str | None = None,
) -> tuple[Path, dict[str, str]]:
    """Write a renamed copy of ``src`` (with ``processing`` as its guarantee, if given); return
    its path and the old→new topic names."""
    ISOLATED.append(suffix)
    yaml = YAML()
    doc = yaml.load(src.read_text())
    names = {name: f"{name}.{suffix}" for name in doc["topics"]}
    doc["topology"] = f"{doc['topology']}_{suffix}"
    if processing is not None:
        doc["processing"] = processing
    doc["topics"] = {names[k]: v for k, v in doc["topics"].items()}
    for table in (doc.get("tables") or {}).values():
        if table.get("topic"):
            table["topic"] = names[table["topic"]]
    for node in doc["nodes"].values():
        if "input" in node:  # a scheduled node has none (it reads its internal ticks topic)
            node["input"] = names[node["input"]]
        for step in node.get("steps") or []:
            if step.get("step") == "join":
                step["topic"] = names[step["topic"]]
        for route in node.get("routes") or []:
            targets = route["to"] if isinstance(route["to"], list) else [route["to"]]
            renamed = []
            for t in targets:
                if isinstance(t, str):
                    renamed.append(names[t])
                elif "topic" in t:
                    t["topic"] = names[t["topic"]]
                    renamed.append(t)
                else:  # a target outside Kafka ({http: ...}): no topic to rename
                    renamed.append(t)
            route["to"] = renamed
        errors = node.get("errors") or {}
        if errors.get("dlq"):
            dlq = errors["dlq"]
            names.setdefault(dlq, f"{dlq}.{suffix}")
            errors["dlq"] = names[dlq]
        if retry_delays and errors.get("retry"):
            errors["retry"]["delays"] = list(retry_delays)
    if any(s.get("step") in ("python", "model") for n in doc["nodes"].values() for s in n.get("steps") or []):
        # the copy lives elsewhere: its python steps and model files load from the original's folders
        folders = [".", *(doc.get("python_paths") or [])]
        doc["python_paths"] = [str((src.parent / folder).resolve()) for folder in folders]
    path = out_dir / src.name
    with path.open("w") as fh:
        yaml.dump(doc, fh)
    return path, names


class WorkerProcess:
    """``stream-orch run`` in a subprocess, its output kept in a log file for failures."""

    def __init__(
        self,
        topology: Path,
        log_path: Path,
        env: dict[str, str] | None = None,
        *,
        metrics_port: int = 0,
    ) -> None:
        """``metrics_port`` 0 (the default) runs without the HTTP endpoint; see :func:`free_port`."""
        self.topology = topology
        self.log_path = log_path
        self.metrics_port = metrics_port
        self.env = {
            **os.environ,
            "STREAM_ORCH_BOOTSTRAP_SERVERS": BOOTSTRAP,
            "STREAM_ORCH_METRICS_HOST": "127.0.0.1",
            "STREAM_ORCH_LAG_INTERVAL_S": "2",  # tests watch lag change within seconds
            # local stores and member slots: a folder per worker (as with containers), kept across
            # its restarts
            "STREAM_ORCH_STATE_DIR": str(log_path.with_suffix(".state")),
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str, global_args: tuple[str, ...] = ()) -> WorkerProcess:
        """``extra`` go after ``run FILE``; ``global_args`` (e.g. ``--log-json``) before ``run``."""
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stream_orch.cli.main",
                "--metrics-port",
                str(self.metrics_port),
                *global_args,
                "run",
                str(self.topology),
                "--schemas",
                str(REPO / "schemas"),
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        return self

    @property
    def state_dir(self) -> Path:
        return Path(self.env["STREAM_ORCH_STATE_DIR"])

    @property
    def url(self) -> str:
        """Base URL of the worker's /metrics, /health and /ready (bound to 127.0.0.1 in tests)."""
        return f"http://127.0.0.1:{self.metrics_port}"

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 40.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]


async def scrape(base: str) -> Samples:
    """Every sample on ``base``/metrics (a worker's or an exporter's)."""
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as s, s.get(base + "/metrics") as resp:
        text = await resp.text()
    return {
        (x.name, tuple(sorted(x.labels.items()))): x.value
        for fam in text_string_to_metric_families(text)
        for x in fam.samples
    }


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1 (for a worker's --metrics-port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def produce_raw(topic: str, records: list[tuple[bytes | None, bytes | None]]) -> None:
    """Send records in order (one partition per key, Kafka's default partitioning)."""
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


async def wait_for_group(group: str, timeout: float = 60.0) -> None:
    """Wait until the worker's consumer group has members with partitions."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            described = await admin.describe_consumer_groups([group])
            for g in described:
                groups = getattr(g, "groups", None) or []
                for item in groups:
                    state = item[2] if isinstance(item, tuple) else getattr(item, "state", "")
                    if state == "Stable":
                        return
            await asyncio.sleep(0.5)
        raise TimeoutError(f"consumer group {group} did not become stable within {timeout}s")
    finally:
        await admin.close()


async def collect(
    topics: list[str],
    until: Callable[[dict[str, list[Any]]], bool],
    timeout: float = 60.0,
    settle: float = 1.0,
) -> dict[str, list[Any]]:
    """Read ``topics`` from the beginning until ``until(records)`` holds (then ``settle`` more
    seconds, to catch anything extra, such as duplicates) or ``timeout`` passes."""
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    seen: dict[str, list[Any]] = {t: [] for t in topics}
    try:
        found = await wait_for_metadata(
            consumer, topics, timeout_s=10
        )  # the worker may still be creating them
        parts = [TopicPartition(t, i) for t in topics for i in sorted(found[t])]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        deadline = time.monotonic() + timeout
        settled_at: float | None = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for tp, records in batch.items():
                seen[tp.topic].extend(records)
            if settled_at is None and until(seen):
                settled_at = time.monotonic() + settle
            if settled_at is not None and time.monotonic() >= settled_at:
                break
    finally:
        await consumer.stop()
    return seen


async def delete_topics_with(fragment: str) -> list[str]:
    """Delete every topic whose name contains ``fragment`` (a test's unique suffix: its inputs,
    outputs, DLQs and what the worker created); returns their names."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if fragment in t]
        if topics:
            await admin.delete_topics(topics)
        return topics
    finally:
        await admin.close()


def summed_by(samples: Samples, metric: str, *labels: str) -> dict[tuple[str, ...], float]:
    """``metric`` summed over its other labels, per value of ``labels`` (e.g. per node and member
    of a supervisor's aggregated /metrics)."""
    out: dict[tuple[str, ...], float] = {}
    for (name, pairs), value in samples.items():
        if name == metric:
            d = dict(pairs)
            key = tuple(d[label] for label in labels)
            out[key] = out.get(key, 0.0) + value
    return out


def headers_of(record: Any) -> dict[str, str]:
    return {k: v.decode("utf-8", "replace") for k, v in record.headers}
