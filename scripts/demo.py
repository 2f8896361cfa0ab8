"""The README's `make demo`: a shipped topology on the local broker, end to end.

`make demo` runs the fraud topology; `make demo TOPOLOGY=reconciliation` (any name of
:data:`DEMOS`) another one. Validates the topology, starts a worker, publishes the topology's
generated data (`stream-orch generate`), waits until the worker has caught up, prints what came out
(records per output topic, DLQ reasons, throughput per node, end lag) and stops the worker with
SIGTERM. The broker is already up (`make demo` runs `stream-orch kafka up` first).
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
from dataclasses import dataclass
from pathlib import Path

from aiokafka import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from stream_orch.observability.lag import LagReader
from stream_orch.runtime.admin import partition_counts
from stream_orch.settings import Settings
from stream_orch.topology.loader import load_topology
from stream_orch.topology.naming import dlq_topic, group_id
from stream_orch.topology.repartition import expand
from stream_orch.transport.reading import read_to_end

REPO = Path(__file__).resolve().parents[1]
METRICS_PORT = int(os.environ.get("DEMO_METRICS_PORT", "9308"))


@dataclass(frozen=True)
class Demo:
    topology: str  # file name in topologies/
    generate: list[str]  # `stream-orch generate` arguments (the demo adds a fresh --seed)
    inputs: list[str]  # topics the generator writes whose records are "published"
    what: str  # one line: what the data is


DEMOS = {
    "fraud": Demo(
        "fraud_detection.yaml",
        [
            "fraud",
            "--customers",
            os.environ.get("DEMO_CUSTOMERS", "500"),
            "--transactions",
            os.environ.get("DEMO_TRANSACTIONS", "20000"),
        ],
        ["transactions"],
        "customer profiles and transactions with fraud patterns",
    ),
    "reconciliation": Demo(
        "reconciliation.yaml",
        ["reconciliation", "--payments", os.environ.get("DEMO_PAYMENTS", "5000")],
        ["payments", "settlements"],
        "ledger payments and card-network settlements, some late, missing or different",
    ),
    "inventory": Demo(
        "inventory.yaml",
        ["inventory", "--movements", os.environ.get("DEMO_MOVEMENTS", "10000")],
        ["inventory.movements"],
        "stores, products, substitutes and the stores' stock ledgers (sales, receipts, transfers...)",
    ),
}


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


def choose() -> Demo:
    name = os.environ.get("TOPOLOGY") or "fraud"
    if name not in DEMOS:
        raise SystemExit(f"make demo: TOPOLOGY={name} is not a demo; choose one of {', '.join(DEMOS)}")
    return DEMOS[name]


async def main() -> int:
    demo = choose()
    topology = REPO / "topologies" / demo.topology
    settings = Settings()
    spec = expand(load_topology(topology).spec)
    nodes = list(spec.nodes.values())
    internal = {n.input for n in nodes}
    outputs = sorted({t.topic for n in nodes for r in n.routes for t in r.targets()} - internal)
    dlqs = sorted({dlq_topic(n) for n in nodes})
    groups = [group_id(spec.topology, name) for name in spec.nodes]

    step(f"validate {topology.relative_to(REPO)}")
    cli("validate", str(topology))

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
            str(topology),
        ],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_ready(worker)
        before = await record_counts(settings, [*outputs, *dlqs, *demo.inputs])

        step(f"publish {demo.what} (stream-orch generate {' '.join(demo.generate)})")
        cli("generate", *demo.generate, "--seed", str(int(time.time())))
        now = await record_counts(settings, demo.inputs)
        published = {topic: now[topic] - before[topic] for topic in demo.inputs}

        step("wait until the worker has caught up (retry tiers included)")
        elapsed = await wait_caught_up(settings, groups, timeout=180)
        await asyncio.sleep(1)
        after = await record_counts(settings, [*outputs, *dlqs])
        reasons = {dlq: await dlq_reasons(settings, dlq, before[dlq]) for dlq in dlqs}
        rows = await lag_rows(settings, groups)
        with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5) as resp:
            metrics_text = resp.read().decode()
    finally:
        step("stop the worker (SIGTERM: finish the batch, flush, commit)")
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(60)

    print()
    print(f"Published: {', '.join(f'{n} {t}' for t, n in published.items())}")
    print(f"All processed {elapsed:.1f}s after the generator finished")
    for name in spec.nodes:
        events, busy = busy_throughput(metrics_text, name)
        if busy:
            print(
                f"{name}: {events:.0f} records (inputs and retries) in {busy:.2f}s of processing"
                f" = {events / busy:,.0f} events/s"
            )
    print("Records per output topic (this run):")
    for topic in [*outputs, *dlqs]:
        print(f"  {topic:32s} {after[topic] - before[topic]:>8d}")
    print("Dead-letter reasons:")
    for dlq, counted in reasons.items():
        for reason, n in counted.most_common():
            print(f"  {dlq}: {reason:40s} {n:>6d}")
    print("End lag (records) per group:")
    for group in groups:
        lag = sum(r.lag_records for r in rows if r.group == group)
        print(f"  {group:40s} {lag:>6d}")
    print(f"Worker exit code: {code}")
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
