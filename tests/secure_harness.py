"""A secure broker of a test module's own (`kafka up --secure` on other ports and a state folder of
its own), and the fraud topology's input and reference, for tests/integration/test_secure_cluster.py."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from kafka_helpers import run_cli

from stream_orch.settings import Settings
from stream_orch.testing import TopologyTestDriver
from stream_orch.transport.metadata import wait_for_metadata
from tests.topology_harness import FRAUD_OUTPUTS, REPO

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def free_pair() -> int:
    """A port whose successor (the controller's) is free too."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 65000:
            with socket.socket() as a, socket.socket() as b:
                try:
                    a.bind(("127.0.0.1", port))
                    b.bind(("127.0.0.1", port + 1))
                    return port
                except OSError:
                    continue
    raise RuntimeError("no free port pair")


class SecureBroker:
    def __init__(self, state: Path, port: int) -> None:
        self.state, self.port = state, port
        self.address = f"127.0.0.1:{port}"
        self.ca = state / "kafka" / "secure" / "ca.pem"

    @property
    def admin_password(self) -> str:
        return (self.state / "kafka" / "secure" / "admin.password").read_text().strip()

    def cli_args(self) -> list[str]:
        return ["--kafka-port", str(self.port), "--state-dir", str(self.state)]

    def env(self, user: str, password: str) -> dict[str, str]:
        return {
            "STREAM_ORCH_BOOTSTRAP_SERVERS": self.address,
            "STREAM_ORCH_SECURITY_PROTOCOL": "SASL_SSL",
            "STREAM_ORCH_SASL_MECHANISM": "SCRAM-SHA-512",
            "STREAM_ORCH_SSL_CAFILE": str(self.ca),
            "STREAM_ORCH_SASL_USERNAME": user,
            "STREAM_ORCH_SASL_PASSWORD": password,
        }

    def admin_args(self) -> dict[str, Any]:
        return Settings(
            **{
                k.removeprefix("STREAM_ORCH_").lower(): v
                for k, v in self.env("admin", self.admin_password).items()
            }
        ).kafka_client_args()  # type: ignore[arg-type]

    async def add_user(self, user: str, password: str) -> None:
        code, out, err = await run_cli(
            "kafka", "user", "add", user, *self.cli_args(), env={"STREAM_ORCH_NEW_USER_PASSWORD": password}
        )
        assert code == 0, err
        assert password not in out + err


def txn(
    txn_id: str, account: str, customer: str, amount: float, currency: str, country: str, ts: int
) -> dict:
    return {
        **{"txn_id": txn_id, "account_id": account, "customer_id": customer, "amount": amount},
        **{"currency": currency, "merchant_id": "M-1", "channel": "online", "country": country, "ts": ts},
    }


def inputs(unique_accounts: bool = False) -> tuple[list[dict], list[dict]]:
    """``unique_accounts``: one transaction per account, so that no event's velocity counts another
    (a rejected event is taken out of its window at the end of its batch, so with shared accounts
    the later events of a batch depend on how the input was cut into batches)."""
    profiles = [
        {
            "customer_id": f"C-{n:06d}",
            "name": f"Name {n}",
            "email": f"c{n}@example.com",
            "home_country": "FR",
            "risk_tier": tier,
            "avg_amount": 100.0,
        }
        for n, tier in ((1, "low"), (2, "medium"), (3, "high"))
    ]
    txns = []
    for i in range(30):
        customer = f"C-{1 + i % 3:06d}"
        amount = [20.0, 900.0, 3000.0][i % 3] * (1 + i % 4)
        txns.append(
            txn(
                f"T{i}",
                f"A{i}" if unique_accounts else f"A{i % 5}",
                customer,
                amount,
                ["EUR", "USD"][i % 2],
                ["FR", "US"][i % 2],
                T0 + i * 7_000,
            )
        )
    # a duplicate, the same record again (so whichever copy a retry tier hands over first is kept): dropped
    txns.append(dict(txns[3]))
    txns.append({"txn_id": "BAD", "account_id": "A9", "amount": "lots"})  # invalid: dead letter
    return profiles, txns


def canon(key: bytes | None, value: bytes | None) -> tuple[bytes | None, bytes | None]:
    """The record with the model's probability to 6 places: onnxruntime scores a batch in one
    call, and a float32 result can differ in its last digits with the batch it came in (the
    worker's batches are not the driver's)."""
    try:
        doc = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        return key, value
    if isinstance(doc, dict) and isinstance(doc.get("fraud_probability"), float):
        doc["fraud_probability"] = round(doc["fraud_probability"], 6)
        return key, orjson.dumps(doc)
    return key, value


def driver_outputs(
    path: Path,
    names: dict[str, str],
    profiles: list[dict],
    txns: list[dict],
    denied: frozenset[str] = frozenset(),
) -> dict[str, Counter]:
    with TopologyTestDriver(path, schemas=REPO / "schemas", start_ms=T0, denied_outputs=denied) as d:
        for p in profiles:
            d.pipe(names["customers"], p, key=p["customer_id"])
        for t in txns:
            d.pipe(names["transactions"], t, key=t["account_id"])
        return {t: Counter(canon(r.raw_key, r.raw_value) for r in d.records(names[t])) for t in FRAUD_OUTPUTS}


async def produce(args: dict[str, Any], topic: str, values: list[dict], key: str) -> None:
    producer = AIOKafkaProducer(**args, acks="all")
    await producer.start()
    try:
        for v in values:
            await producer.send_and_wait(topic, orjson.dumps(v), key=str(v[key]).encode())
    finally:
        await producer.stop()


async def read_all(
    args: dict[str, Any], topics: list[str], want: dict[str, int], timeout: float
) -> dict[str, Counter]:
    consumer = AIOKafkaConsumer(
        **args, group_id=None, isolation_level="read_committed", auto_offset_reset="earliest"
    )
    await consumer.start()
    seen: dict[str, Counter] = {t: Counter() for t in topics}
    try:
        found = await wait_for_metadata(consumer, topics, timeout_s=30)
        parts = [TopicPartition(t, i) for t in topics for i in sorted(found[t])]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        deadline = time.monotonic() + timeout
        settle: float | None = None
        while time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=300)).items():
                seen[tp.topic].update(canon(r.key, r.value) for r in records)
            if settle is None and all(sum(seen[t].values()) >= n for t, n in want.items()):
                settle = time.monotonic() + 3.0  # anything extra (a duplicate) shows here
            if settle is not None and time.monotonic() >= settle:
                break
    finally:
        await consumer.stop()
    return seen


def secrets_absent(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text


async def list_topics(args: dict[str, Any]) -> list[str]:
    admin = AIOKafkaAdminClient(**args)
    await admin.start()
    try:
        return await admin.list_topics()
    finally:
        await admin.close()


async def wait_for_topics(args: dict[str, Any], topics: list[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not set(topics) <= set(await list_topics(args)):
        assert time.monotonic() < deadline, f"{topics} not created within {timeout}s"
        await asyncio.sleep(0.5)


async def topic_has_records(args: dict[str, Any], topic: str) -> bool:
    consumer = AIOKafkaConsumer(**args, group_id=None, isolation_level="read_committed")
    await consumer.start()
    try:
        found = await wait_for_metadata(consumer, [topic], timeout_s=30)
        parts = [TopicPartition(topic, p) for p in sorted(found[topic])]
        assert parts
        ends = await consumer.end_offsets(parts)  # the last stable offsets: committed records only
        starts = await consumer.beginning_offsets(parts)
        return any(ends[p] > starts[p] for p in parts)
    finally:
        await consumer.stop()
