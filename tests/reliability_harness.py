"""Reliability tests on top of :mod:`tests.topology_harness`: load, watching outputs while a worker
is killed, accounting for every input record, an own broker to stop, and the results file.

Every input record is accounted for by its input coordinates: an output carries
``so.src.partition``/``so.src.offset`` and a dead letter ``so.error.partition``/``so.error.offset``.
A record is *lost* when neither exists and it is not a legitimate duplicate (its ``txn_id`` was
sent before and came out). An output emitted twice for the same coordinates is a *duplicate*
(at-least-once re-emission after a crash).
"""

from __future__ import annotations

import asyncio
import os
import platform
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream_orch.transport.metadata import wait_for_metadata
from tests import topology_harness as th

REPO = th.REPO
# Each run appends its figures here (git-ignored, so `make test` leaves the tree clean);
# `python -m tests.reliability_report` renders them into docs/reliability-report.md.
RESULTS = Path(
    os.environ.get("STREAM_ORCH_RELIABILITY_RESULTS", REPO / ".state" / "reliability-results.jsonl")
)


def bootstrap() -> str:
    return th.BOOTSTRAP


# ---------------------------------------------------------------------------- producing


def _producer(server: str | None, **extra: Any) -> AIOKafkaProducer:
    """Idempotent with acks=all: a test's input is written once, in order per partition."""
    return AIOKafkaProducer(
        bootstrap_servers=server or bootstrap(), acks="all", enable_idempotence=True, linger_ms=5, **extra
    )


async def produce_bulk(
    topic: str, records: list[tuple[bytes | None, bytes | None]], *, server: str | None = None, **extra: Any
) -> list[tuple[int, int]]:
    """Produce in order per key, pipelined; returns (partition, offset) of each record."""
    producer = _producer(server, max_batch_size=256 * 1024, **extra)
    await producer.start()
    try:
        futures = []
        for key, value in records:
            futures.append(await producer.send(topic, value=value, key=key))
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [(m.partition, m.offset) for m in metas]


async def produce_paced(
    topic: str, records: list[tuple[bytes | None, bytes | None]], rate: int, *, server: str | None = None
) -> list[tuple[int, int] | None]:
    """Produce at about ``rate`` records/s, like a live source, riding out a broker outage (sends
    wait in the producer's buffer up to ``request_timeout_ms``); (partition, offset) of each
    record, None for one the broker never acknowledged."""
    producer = _producer(server, request_timeout_ms=120_000, retry_backoff_ms=250)
    await producer.start()
    chunk = max(1, rate // 20)
    futures: list[asyncio.Future[Any]] = []
    try:
        started = time.monotonic()
        for i in range(0, len(records), chunk):
            for key, value in records[i : i + chunk]:
                futures.append(await producer.send(topic, value=value, key=key))
            await asyncio.sleep(max(0.0, started + (i + chunk) / rate - time.monotonic()))
        metas = await asyncio.gather(*futures, return_exceptions=True)
    finally:
        await producer.stop()
    return [None if isinstance(m, BaseException) else (m.partition, m.offset) for m in metas]


# ---------------------------------------------------------------------------- watching


class Watcher:
    """A group-less consumer of ``topics`` from the beginning, polled while things happen. It
    reads committed records only, as an analyst's consumer of an exactly-once topology should."""

    def __init__(self, topics: list[str], *, server: str | None = None) -> None:
        self.topics = topics
        self.server = server or bootstrap()
        self.records: dict[str, list[Any]] = {t: [] for t in topics}
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> Watcher:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.server,
            auto_offset_reset="earliest",
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=16 * 1024 * 1024,
        )
        await consumer.start()
        found = await wait_for_metadata(consumer, self.topics, timeout_s=20)
        parts = [TopicPartition(t, i) for t in self.topics for i in sorted(found[t])]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        self._consumer = consumer
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def poll(self, seconds: float = 0.3) -> None:
        assert self._consumer is not None
        deadline = time.monotonic() + seconds
        while True:
            batch = await self._consumer.getmany(timeout_ms=max(1, int((deadline - time.monotonic()) * 1000)))
            for tp, records in batch.items():
                self.records[tp.topic].extend(records)
            if time.monotonic() >= deadline:
                return

    async def wait(self, cond: Callable[[Watcher], bool], timeout: float, settle: float = 0.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await self.poll(0.3)
            if cond(self):
                if settle:
                    await self.poll(settle)
                return True
        return False

    def count(self, topic: str) -> int:
        return len(self.records[topic])


# ---------------------------------------------------------------------------- accounting


def _h(record: Any) -> dict[str, str]:
    return {k: (v or b"").decode("utf-8", "replace") for k, v in record.headers}


def txn_id_of(value: bytes | None) -> str | None:
    try:
        v = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        return None
    return v.get("txn_id") if isinstance(v, dict) and isinstance(v.get("txn_id"), str) else None


@dataclass
class Accounting:
    events_in: int = 0
    outputs: int = 0  # distinct input records with an output
    dead_lettered: int = 0  # distinct input records in the DLQ
    dropped_duplicates: int = 0  # input duplicates of a txn_id that came out (dedupe)
    lost: list[tuple[int, int]] = field(default_factory=list)
    duplicated: int = 0  # extra copies of an output (at-least-once re-emission)
    duplicated_txn_ids: int = 0  # extra outputs of a txn_id (whatever the cause)

    def figures(self) -> dict[str, int]:
        return {
            "events_in": self.events_in,
            "with_output": self.outputs,
            "dead_lettered": self.dead_lettered,
            "input_duplicates_dropped": self.dropped_duplicates,
            "lost": len(self.lost),
            "duplicated_outputs": self.duplicated,
        }

    def complete(self) -> bool:
        return not self.lost


def account(
    inputs: list[tuple[tuple[int, int], bytes | None]],
    outputs: list[Any],
    dead_letters: list[Any],
) -> Accounting:
    """``inputs``: ((partition, offset), value) of every input record; ``outputs``: the records of
    the one output topic every processed event reaches; ``dead_letters``: the DLQ records."""
    acc = Accounting(events_in=len(inputs))
    out_coords: Counter[tuple[int, int]] = Counter()
    out_ids: Counter[str] = Counter()
    for r in outputs:
        h = _h(r)
        out_coords[(int(h["so.src.partition"]), int(h["so.src.offset"]))] += 1
        tid = txn_id_of(r.value)
        if tid:
            out_ids[tid] += 1
    dlq_coords: Counter[tuple[int, int]] = Counter()
    for r in dead_letters:
        h = _h(r)
        dlq_coords[(int(h["so.error.partition"]), int(h["so.error.offset"]))] += 1
    acc.duplicated = sum(n - 1 for n in out_coords.values() if n > 1) + sum(
        n - 1 for n in dlq_coords.values() if n > 1
    )
    acc.duplicated_txn_ids = sum(n - 1 for n in out_ids.values() if n > 1)
    for coords, value in inputs:
        if coords in out_coords:
            acc.outputs += 1
        elif coords in dlq_coords:
            acc.dead_lettered += 1
        else:
            tid = txn_id_of(value)
            if tid is not None and out_ids[tid] and _is_repeat(tid, coords, inputs):
                acc.dropped_duplicates += 1
            else:
                acc.lost.append(coords)
    return acc


FRAUD_OUTPUTS = th.FRAUD_OUTPUTS


def duplicated_per_topic(records: dict[str, list[Any]]) -> dict[str, int]:
    """Per topic, the extra copies of an output for one input record (its lineage or error
    coordinates); topics without any are left out."""
    extra: dict[str, int] = {}
    for topic, rows in records.items():
        seen: Counter[tuple[str, str]] = Counter()
        for r in rows:
            h = _h(r)
            partition = h.get("so.src.partition") or h.get("so.error.partition", "?")
            seen[(partition, h.get("so.src.offset") or h.get("so.error.offset", "?"))] += 1
        n = sum(c - 1 for c in seen.values() if c > 1)
        if n:
            extra[topic] = n
    return extra


def wrong_velocities(outputs: list[Any], expected: dict[str, int]) -> tuple[dict[str, int], list[Any]]:
    """Outputs per txn_id, and the outputs whose velocity_60s differs from the reference."""
    per_id: Counter[str] = Counter()
    wrong = []
    for r in outputs:
        v = orjson.loads(r.value)
        per_id[v["txn_id"]] += 1
        if v["velocity_60s"] != expected[v["txn_id"]]:
            wrong.append((v["txn_id"], v["velocity_60s"], expected[v["txn_id"]]))
    return dict(per_id), wrong


@dataclass
class Verdict:
    """What an exactly-once fraud run left on its outputs, against the reference velocities."""

    duplicated: dict[str, int]  # per output topic, extra copies of one input's output
    per_id: dict[str, int]  # enriched outputs per txn_id
    wrong_velocity: list[Any]

    def figures(self) -> dict[str, int]:
        return {
            "duplicated_any_output": sum(self.duplicated.values()),
            "wrong_velocity": len(self.wrong_velocity),
        }

    def assert_exactly_once(self, acc: Accounting, expected: dict[str, int], log: str = "") -> None:
        """Nothing lost, nothing twice on any output, every txn_id once with its velocity."""
        assert acc.lost == [], f"{len(acc.lost)} lost, e.g. {acc.lost[:5]}\n{log}"
        assert self.duplicated == {}, self.duplicated
        assert sorted(self.per_id) == sorted(expected), "every txn_id (dedupe state came back)"
        assert set(self.per_id.values()) == {1}
        assert self.wrong_velocity == [], self.wrong_velocity[:10]


def verdict(outputs: dict[str, list[Any]], enriched: str, expected: dict[str, int]) -> Verdict:
    """``outputs``: the records of the output topics only, by topic."""
    per_id, wrong = wrong_velocities(outputs[enriched], expected)
    return Verdict(duplicated_per_topic(outputs), per_id, wrong)


def velocities_as_landed(inputs: list[Any], window_ms: int = 60_000) -> dict[str, int]:
    """The reference velocity_60s of each txn_id computed from the input records as they landed
    (each partition in offset order, the first copy of a txn_id only): what the topology must
    compute whatever order a producer's retries left them in. Equals :func:`crafted`'s reference
    when every record landed in the order it was sent."""
    seen: set[str] = set()
    times: dict[str, list[int]] = {}
    out: dict[str, int] = {}
    for r in sorted(inputs, key=lambda r: (r.partition, r.offset)):
        v = orjson.loads(r.value)
        if v["txn_id"] in seen:
            continue
        seen.add(v["txn_id"])
        t, account = v["ts"], times.setdefault(v["account_id"], [])
        account.append(t)
        out[v["txn_id"]] = sum(1 for s in account if t - window_ms < s <= t)
    return out


def processed_after(records: list[Any], at_ms: float) -> list[int]:
    """``so.processed_at`` of the outputs processed at or after ``at_ms``."""
    stamps = (int(_h(r).get("so.processed_at", 0)) for r in records)
    return [s for s in stamps if s >= at_ms]


_first_seen: dict[int, dict[str, tuple[int, int]]] = {}


def _is_repeat(tid: str, coords: tuple[int, int], inputs: list[tuple[tuple[int, int], bytes | None]]) -> bool:
    """Whether an earlier input record (same partition, lower offset) has this txn_id."""
    index = _first_seen.get(id(inputs))
    if index is None:
        index = {}
        for c, v in inputs:
            t = txn_id_of(v)
            if t is not None and (t not in index or c < index[t]):
                index[t] = c
        _first_seen.clear()
        _first_seen[id(inputs)] = index
    return index.get(tid, coords) != coords


# ---------------------------------------------------------------------------- results


def record_result(test: str, **figures: Any) -> None:
    """Append one JSON row to RESULTS (rendered by tests.reliability_report)."""
    row = {
        "test": test,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        **figures,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("ab") as fh:
        fh.write(orjson.dumps(row) + b"\n")


# ---------------------------------------------------------------------------- own broker


def _free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


class OwnBroker:
    """A broker of our own (``stream-orch --kafka-port P --state-dir D kafka up|down``), so that
    a test can stop it without touching the shared one."""

    def __init__(self, state_dir: Path, port: int = 19192) -> None:
        from stream_orch.broker.jars import jars_ready
        from stream_orch.broker.layout import BrokerLayout

        if not (_free(port) and _free(port + 1)):
            for candidate in range(19200, 19300, 2):
                if _free(candidate) and _free(candidate + 1):
                    port = candidate
                    break
        self.port = port
        self.state_dir = state_dir
        self.bootstrap = f"127.0.0.1:{port}"
        layout = BrokerLayout.under(state_dir)
        project = BrokerLayout.under(REPO / ".state").jars_dir
        layout.root.mkdir(parents=True, exist_ok=True)
        if jars_ready(project) and not layout.jars_dir.exists():
            layout.jars_dir.symlink_to(project, target_is_directory=True)

    def _cli(self, *args: str, timeout: float = 180) -> str:
        cmd = [sys.executable, "-m", "stream_orch.cli.main", "--kafka-port", str(self.port)]
        cmd += ["--state-dir", str(self.state_dir), "kafka", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def up(self) -> float:
        started = time.monotonic()
        self._cli("up")
        return time.monotonic() - started

    def down(self) -> None:
        self._cli("down")


# ---------------------------------------------------------------------------- topologies and data

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


GUARANTEES = ["at_least_once", "exactly_once"]


def fraud_copy(
    tmp_path: Path, *, server: str | None = None, processing: str | None = None
) -> tuple[Path, dict[str, str], str]:
    """An isolated copy of the reference fraud topology (its own guarantee unless ``processing``
    is given); (path, topic names, consumer group)."""
    import uuid

    suffix = uuid.uuid4().hex[:8]
    path, names = th.isolated_topology(
        REPO / "topologies" / "fraud_detection.yaml",
        tmp_path,
        suffix,
        retry_delays=["500ms", "1s", "2s"],
        processing=processing,
    )
    return path, names, f"fraud_detection_{suffix}.score_transactions"


def topology_copy(tmp_path: Path, doc: dict[str, Any]) -> tuple[Path, dict[str, str], str]:
    """An isolated copy of the one-node topology ``doc`` (its node named ``work``); (path, topic
    names, consumer group)."""
    import uuid

    from ruamel.yaml import YAML

    src = tmp_path / "src" / f"{doc['topology']}.yaml"
    src.parent.mkdir()
    with src.open("w") as fh:
        YAML().dump(doc, fh)
    suffix = uuid.uuid4().hex[:8]
    path, names = th.isolated_topology(src, tmp_path, suffix)
    return path, names, f"{doc['topology']}_{suffix}.work"


async def delete_topics(topics: list[str], *, server: str | None = None) -> None:
    """Delete what a test created (topics that do not exist are no error)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=server or bootstrap())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        gone = [t for t in topics if t in existing]
        if gone:
            await admin.delete_topics(gone)
    finally:
        await admin.close()


async def global_table_loaded(
    urls: list[str],
    topic: str,
    rows: int,
    *,
    members: int = 1,
    table: str = "customer_profiles",
    server: str | None = None,
    timeout: float = 60.0,
) -> bool:
    """``rows`` committed records are on ``topic`` (the global table's own topic, e.g.
    customers.clean) and every worker at ``urls`` (``members`` each, for a supervisor's
    aggregated /metrics) has applied all of it: its follower reports a last apply and no lag,
    twice in a row. Tests wait for this instead of a fixed sleep before they send records that
    look the table up: on a busy machine a sleep was sometimes too short."""
    deadline = time.monotonic() + timeout
    async with Watcher([topic], server=server) as watch:
        if not await watch.wait(lambda w: w.count(topic) >= rows, timeout=timeout):
            return False
    applied_name = "stream_orch_global_table_last_applied_timestamp_seconds"
    lag_name = "stream_orch_global_table_lag_records"
    settled = 0
    while time.monotonic() < deadline:
        done = True
        for url in urls:
            samples = await th.scrape(url)
            mine = [(n, v) for (n, labels), v in samples.items() if ("table", table) in labels]
            applied = [v for n, v in mine if n == applied_name]
            lags = [v for n, v in mine if n == lag_name]
            done = done and len(applied) >= members and len(lags) >= members and not any(lags)
        settled = settled + 1 if done else 0
        if settled >= 2:  # a follower's lag is as of its last fetch: one more scrape after it
            return True
        await asyncio.sleep(0.25)
    return False


def worker(path: Path, log: Path, *, server: str | None = None, metrics_port: int = 0) -> th.WorkerProcess:
    env = {"PYTHONPATH": str(REPO), "SO_TEST_FAULT_DIR": str(log.parent)}
    if server:
        env["STREAM_ORCH_BOOTSTRAP_SERVERS"] = server
    return th.WorkerProcess(path, log, env=env, metrics_port=metrics_port)


def crafted(accounts: int, per_account: int, dup_every: int = 50) -> tuple[list, list, dict[str, int]]:
    """Profiles and transactions whose velocity is known: account a's i-th transaction is at
    T0 + i*10 s, so velocity_60s = min(i + 1, 6). Every ``dup_every``-th transaction is sent a
    second time right away (dedupe must drop it). Returns (profiles, transactions, expected)."""
    profiles = []
    for a in range(1, accounts + 1):
        value = {
            "customer_id": f"C-{a:06d}",
            "name": f"Name {a}",
            "email": f"c{a}@example.com",
            "home_country": "DE",
            "risk_tier": "low",
            "avg_amount": 100.0,
        }
        profiles.append((f"C-{a:06d}".encode(), orjson.dumps(value)))
    txns, expected = [], {}
    n = 0
    for i in range(per_account):
        for a in range(1, accounts + 1):
            tid = f"T-{a:04d}-{i:04d}"
            value = {
                "txn_id": tid,
                "account_id": f"A-{a:06d}",
                "customer_id": f"C-{a:06d}",
                "amount": 10.0 + i,
                "currency": "EUR",
                "merchant_id": "M-00001",
                "channel": "card_present",
                "country": "DE",
                "ts": T0 + i * 10_000,
            }
            record = (f"A-{a:06d}".encode(), orjson.dumps(value))
            txns.append(record)
            expected[tid] = min(i + 1, 6)
            n += 1
            if n % dup_every == 0:
                txns.append(record)
    return profiles, txns, expected


async def wait_accounted(
    watch: Watcher,
    inputs: list[tuple[tuple[int, int], bytes | None]],
    output: str,
    dlq: str,
    timeout: float,
) -> Accounting:
    """Poll until every input record is accounted for (or ``timeout``), then settle 2 s more."""
    deadline = time.monotonic() + timeout
    acc = account(inputs, watch.records[output], watch.records[dlq])
    while time.monotonic() < deadline:
        await watch.poll(1.5)
        acc = account(inputs, watch.records[output], watch.records[dlq])
        if acc.complete():
            await watch.poll(2.0)
            return account(inputs, watch.records[output], watch.records[dlq])
    return acc
