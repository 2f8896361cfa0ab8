"""The README's `make demo`: the fraud topology on the local broker, end to end.

Validates the topology, starts a worker, publishes generated profiles and transactions, waits
until the worker has caught up, prints what came out (records per output topic, DLQ reasons,
throughput, end lag) and stops the worker with SIGTERM. The broker is already up (`make demo`
runs `stream-orch kafka up` first).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

from aiokafka import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from stream_orch.observability.lag import LagReader
from stream_orch.runtime.admin import partition_counts
from stream_orch.settings import Settings
from stream_orch.topology.loader import load_topology
from stream_orch.topology.naming import dlq_topic, group_id
from stream_orch.transport.reading import read_to_end

REPO = Path(__file__).resolve().parents[1]
TOPOLOGY = REPO / "topologies" / "fraud_detection.yaml"
CUSTOMERS = int(os.environ.get("DEMO_CUSTOMERS", "500"))
TRANSACTIONS = int(os.environ.get("DEMO_TRANSACTIONS", "20000"))
METRICS_PORT = int(os.environ.get("DEMO_METRICS_PORT", "9308"))


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "stream_orch.cli.main", *args], check=True)


async def record_counts(settings: Settings, topics: list[str]) -> Counter[str]:
    """Committed records per topic, counted by reading them: under exactly_once the end offsets
    also count the transaction markers, one per transaction and partition."""
    counts = await partition_counts(settings.kafka_client_args(), topics)
    totals: Counter[str] = Counter(dict.fromkeys(topics, 0))

    def count(record) -> None:  # type: ignore[no-untyped-def]
        totals[record.topic] += 1

    tps = [TopicPartition(topic, p) for topic, n in counts.items() for p in range(n)]
    await read_to_end(settings.kafka_client_args(), tps, count)
    return totals


async def dlq_reasons(settings: Settings, topic: str, skip: int) -> Counter[str]:
    """Reasons of the dead letters written after the first ``skip`` records (this run's)."""
    counts = await partition_counts(settings.kafka_client_args(), [topic])
    records: list = []
    parts = [TopicPartition(topic, p) for p in range(counts.get(topic, 0))]
    await read_to_end(settings.kafka_client_args(), parts, records.append)
    records.sort(key=lambda r: r.timestamp)
    reasons: Counter[str] = Counter()
    for record in records[skip:]:
        reason = dict(record.headers).get("so.error.reason", b"?").decode()
        kind, _, detail = reason.partition(":")
        field = detail.split()[0] if detail else ""
        reasons[f"{kind}: {field}" if field else kind] += 1
    return reasons


async def wait_caught_up(settings: Settings, groups: list[str], timeout: float) -> float:
    reader = LagReader(settings)
    await reader.start()
    started = time.monotonic()
    try:
        while time.monotonic() - started < timeout:
            rows = await reader.snapshot(groups, time.time())
            lag = sum(r.lag_records for r in rows)
            if rows and lag == 0:
                return time.monotonic() - started
            await asyncio.sleep(0.5)
        raise TimeoutError("the worker did not catch up in time")
    finally:
        await reader.stop()


async def lag_rows(settings: Settings, groups: list[str]) -> list:
    reader = LagReader(settings)
    await reader.start()
    try:
        return await reader.snapshot(groups, time.time())
    finally:
        await reader.stop()


def busy_throughput(metrics_text: str, node: str) -> tuple[float, float]:
    """Events a node consumed and the seconds it spent processing batches, from its /metrics."""
    events = busy = 0.0
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.labels.get("node") != node:
                continue
            if sample.name == "stream_orch_events_in_total":
                events += sample.value
            elif sample.name == "stream_orch_batch_processing_seconds_sum":
                busy += sample.value
    return events, busy


def wait_ready(proc: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the worker exited with {proc.returncode}; see .state/demo-worker.log")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/ready", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("the worker did not become ready; see .state/demo-worker.log")


async def main() -> int:
    settings = Settings()
    spec = load_topology(TOPOLOGY).spec
    node = spec.nodes["score_transactions"]
    outputs = sorted({t.topic for r in node.routes for t in r.targets()})
    dlq = dlq_topic(node)
    groups = [group_id(spec.topology, name) for name in spec.nodes]

    step(f"validate {TOPOLOGY.relative_to(REPO)}")
    cli("validate", str(TOPOLOGY))

    step(f"start the worker (stream-orch run), metrics on http://127.0.0.1:{METRICS_PORT}/metrics")
    log_path = REPO / ".state" / "demo-worker.log"
    log_path.parent.mkdir(exist_ok=True)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stream_orch.cli.main",
            "--metrics-port",
            str(METRICS_PORT),
            "run",
            str(TOPOLOGY),
        ],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_ready(worker)
        before = await record_counts(settings, [*outputs, dlq, "transactions"])

        step(f"publish {CUSTOMERS} profiles and {TRANSACTIONS} transactions (stream-orch generate fraud)")
        cli(
            "generate",
            "fraud",
            "--customers",
            str(CUSTOMERS),
            "--transactions",
            str(TRANSACTIONS),
            "--seed",
            str(int(time.time())),
        )
        published = (await record_counts(settings, ["transactions"]))["transactions"] - before["transactions"]

        step("wait until the worker has caught up (retry tiers included)")
        elapsed = await wait_caught_up(settings, groups, timeout=180)
        await asyncio.sleep(1)
        after = await record_counts(settings, [*outputs, dlq])
        reasons = await dlq_reasons(settings, dlq, before[dlq])
        rows = await lag_rows(settings, groups)
        with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5) as resp:
            metrics_text = resp.read().decode()
    finally:
        step("stop the worker (SIGTERM: finish the batch, flush, commit)")
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(60)

    print()
    print(f"Transactions published: {published}; all processed {elapsed:.1f}s after the generator finished")
    events, busy = busy_throughput(metrics_text, "score_transactions")
    if busy:
        print(
            f"score_transactions: {events:.0f} records (inputs and retries) in {busy:.2f}s of processing"
            f" = {events / busy:,.0f} events/s"
        )
    print("Records per output topic (this run):")
    for topic in [*outputs, dlq]:
        print(f"  {topic:24s} {after[topic] - before[topic]:>8d}")
    print("Dead-letter reasons:")
    for reason, n in reasons.most_common():
        print(f"  {reason:40s} {n:>6d}")
    print("End lag (records) per group:")
    for group in groups:
        lag = sum(r.lag_records for r in rows if r.group == group)
        print(f"  {group:40s} {lag:>6d}")
    print(f"Worker exit code: {code}")
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
