"""The README's `make demo`: a shipped topology on the local broker, end to end.

`make demo` runs the fraud topology; `make demo TOPOLOGY=reconciliation` (any name of
:data:`DEMOS`) another one. A demo whose topology delivers to an HTTP endpoint (fleet: the
dispatcher) gets a local receiver (stream_orch.testing.http_receiver), its URL in the variable the
topology reads, and the summary counts what it received.

Validates the topology, starts a worker, publishes the topology's generated data (`stream-orch
generate`), waits until the worker has caught up, prints what came out
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
from stream_orch.testing.http_receiver import read_log
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
    # the variable holding the URL of the topology's http target: the demo starts a receiver there
    receiver_env: str | None = None
    # Event time of one run's data, for topologies that keep watermarks (windows, joins): the
    # generator's data ends now and spans `event_minutes`, its closing records reach
    # `tail_minutes` further. A second run within that time would fall behind the first run's
    # watermarks (its records dropped as late), so each run starts where the last one ended.
    event_minutes: float | None = None
    tail_minutes: float = 0.0
    # For topologies whose state carries over between runs (a running stock level): said when
    # the broker already held this topology's outputs, since the generator's expected counts
    # assume a fresh start.
    carries_over: str | None = None


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
        ["reconciliation", "--payments", os.environ.get("DEMO_PAYMENTS", "5000"), "--minutes", "120"],
        ["payments", "settlements"],
        "ledger payments and card-network settlements, some late, missing or different",
        event_minutes=120,
        tail_minutes=125,  # late settlements up to an hour after, then the sentinels an hour later
    ),
    "fleet": Demo(
        "fleet.yaml",
        ["fleet", "--vehicles", os.environ.get("DEMO_VEHICLES", "50"), "--shift-minutes", "120"],
        ["fleet.readings", "fleet.plan"],
        "vehicle readings with faults, and route plans with late and missed stops",
        receiver_env="FLEET_DISPATCH_URL",
        event_minutes=120,
        tail_minutes=1,
    ),
    "inventory": Demo(
        "inventory.yaml",
        ["inventory", "--movements", os.environ.get("DEMO_MOVEMENTS", "10000")],
        ["inventory.movements"],
        "stores, products, substitutes and the stores' stock ledgers (sales, receipts, transfers...)",
        carries_over="stock levels continue from the earlier runs' (same stores and products), so "
        "alerts and reorder lines differ from the generator's expected counts, which hold on a fresh broker",
    ),
}
RECEIVER_PORT = int(os.environ.get("DEMO_RECEIVER_PORT", "8787"))


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


def metrics_text() -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5) as resp:
        return resp.read().decode()


def ticks_fired(text: str) -> float:
    """Ticks the worker's scheduled nodes have fired (stream_orch_schedule_ticks_fired_total)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "stream_orch_schedule_ticks_fired_total"
    )


async def wait_next_tick(timeout: float) -> bool:
    """Wait until a scheduled node fires once more (its rows then reflect this run's records)."""
    start = ticks_fired(metrics_text())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(1)
        if ticks_fired(metrics_text()) > start:
            return True
    return False


def busy_throughput(text: str, node: str) -> tuple[float, float]:
    """Events a node consumed and the seconds it spent processing batches, from its /metrics."""
    events = busy = 0.0
    for family in text_string_to_metric_families(text):
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


def start_receiver(port: int, log: Path) -> subprocess.Popen[bytes]:
    """The test suite's HTTP receiver in a process of its own, answering 200 and logging each request."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream_orch.testing.http_receiver", "--port", str(port), "--log", str(log),
         "--lifetime", "900"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    if proc.stdout is None or proc.stdout.readline().strip() != b"listening":
        raise SystemExit(f"the HTTP receiver could not listen on 127.0.0.1:{port} (DEMO_RECEIVER_PORT)")
    return proc


def event_start(name: str, demo: Demo) -> list[str]:
    """``--start-ms`` for this run: the generator's default (its data ends now), or where the last
    run's event time ended if that is later; the end is kept in .state/ for the next run."""
    if demo.event_minutes is None:
        return []
    mark = REPO / ".state" / f"demo-{name}.next-start-ms"
    start = int(time.time() * 1000) - int(demo.event_minutes * 60_000)
    if mark.exists():
        start = max(start, int(mark.read_text()))
    mark.write_text(str(start + int((demo.event_minutes + demo.tail_minutes + 1) * 60_000)))
    return ["--start-ms", str(start)]


def choose() -> tuple[str, Demo]:
    name = os.environ.get("TOPOLOGY") or "fraud"
    if name not in DEMOS:
        raise SystemExit(f"make demo: TOPOLOGY={name} is not a demo; choose one of {', '.join(DEMOS)}")
    return name, DEMOS[name]


async def main() -> int:
    name, demo = choose()
    topology = REPO / "topologies" / demo.topology
    settings = Settings()
    spec = expand(load_topology(topology).spec)
    nodes = list(spec.nodes.values())
    # what the nodes read (their inputs and the other sides of their joins) is not an output
    internal = {n.input for n in nodes} | {s.topic for n in nodes for s in n.steps if s.step == "join"}
    outputs = sorted({t.topic for n in nodes for r in n.routes for t in r.targets()} - internal)
    dlqs = sorted({dlq_topic(n) for n in nodes})
    groups = [group_id(spec.topology, name) for name in spec.nodes]

    step(f"validate {topology.relative_to(REPO)}")
    cli("validate", str(topology))

    log_path = REPO / ".state" / "demo-worker.log"
    log_path.parent.mkdir(exist_ok=True)
    env = dict(os.environ)
    receiver = None
    received_log = REPO / ".state" / "demo-received.jsonl"
    if demo.receiver_env:
        url = f"http://127.0.0.1:{RECEIVER_PORT}/dispatch"
        shown = received_log.relative_to(REPO)
        step(f"start a local HTTP receiver at {url} ({demo.receiver_env}), logging to {shown}")
        received_log.unlink(missing_ok=True)
        receiver = start_receiver(RECEIVER_PORT, received_log)
        env[demo.receiver_env] = url

    step(f"start the worker (stream-orch run), metrics on http://127.0.0.1:{METRICS_PORT}/metrics")
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
        env=env,
    )
    try:
        wait_ready(worker)
        before = await record_counts(settings, [*outputs, *dlqs, *demo.inputs])

        step(f"publish {demo.what} (stream-orch generate {' '.join(demo.generate)})")
        cli("generate", *demo.generate, *event_start(name, demo), "--seed", str(int(time.time())))
        now = await record_counts(settings, demo.inputs)
        published = {topic: now[topic] - before[topic] for topic in demo.inputs}

        step("wait until the worker has caught up (retry tiers included)")
        elapsed = await wait_caught_up(settings, groups, timeout=180)
        scheduled = [n for n, node in spec.nodes.items() if node.schedule is not None]
        if scheduled:
            step(f"wait for the next tick of {', '.join(scheduled)} (its schedule; up to 70 s)")
            if await wait_next_tick(70):
                await wait_caught_up(settings, groups, timeout=60)
        await asyncio.sleep(1)
        after = await record_counts(settings, [*outputs, *dlqs])
        reasons = {dlq: await dlq_reasons(settings, dlq, before[dlq]) for dlq in dlqs}
        rows = await lag_rows(settings, groups)
        metrics = metrics_text()
    finally:
        step("stop the worker (SIGTERM: finish the batch, flush, commit)")
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(60)
        if receiver is not None:
            receiver.kill()
            receiver.wait(10)

    print()
    print(f"Published: {', '.join(f'{n} {t}' for t, n in published.items())}")
    print(f"All processed {elapsed:.1f}s after the generator finished")
    for node in spec.nodes:
        events, busy = busy_throughput(metrics, node)
        if busy:
            print(
                f"{node}: {events:.0f} records (inputs and retries) in {busy:.2f}s of processing"
                f" = {events / busy:,.0f} events/s"
            )
    print("Records per output topic (this run):")
    for topic in [*outputs, *dlqs]:
        print(f"  {topic:32s} {after[topic] - before[topic]:>8d}")
    print("Dead-letter reasons:")
    for dlq, counted in reasons.items():
        for reason, n in counted.most_common():
            print(f"  {dlq}: {reason:40s} {n:>6d}")
    if receiver is not None:
        requests = read_log(received_log)
        keys = {r["key"] for r in requests}
        statuses = Counter(r["status"] for r in requests)
        print(f"Delivered to the HTTP receiver ({demo.receiver_env}):")
        print(f"  {'requests':32s} {len(requests):>8d}")
        print(f"  {'distinct Idempotency-Keys':32s} {len(keys):>8d}")
        print(f"  {'answered':32s} {', '.join(f'{n} x {s}' for s, n in sorted(statuses.items())) or '-'}")
    print("End lag (records) per group:")
    for group in groups:
        lag = sum(r.lag_records for r in rows if r.group == group)
        print(f"  {group:40s} {lag:>6d}")
    if demo.carries_over and any(before[topic] for topic in outputs):
        print(f"Note: this broker already held {demo.topology}'s outputs: {demo.carries_over}.")
    print(f"Worker exit code: {code}")
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
