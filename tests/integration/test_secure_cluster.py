"""The secure local broker (`kafka up --secure`: SASL_SSL, SCRAM-SHA-512, ACLs enforced) as a
separate instance on its own ports and state folder (the shared plaintext broker is never
touched): the fraud topology end to end as a user holding only the ACLs of `acl plan --apply`,
against the test driver on the same input; a wrong password; a missing READ; no secret in the
worker's log, /metrics, SIGUSR1 dump or `--help`."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from kafka_helpers import run_cli

from stream_orch.security.acls import plan_acls, principal_of
from stream_orch.settings import Settings
from stream_orch.testing import TopologyTestDriver
from stream_orch.topology.loader import load_topology
from stream_orch.transport.metadata import wait_for_metadata
from stream_orch.transport.security_admin import create_acls
from tests.topology_harness import FRAUD_OUTPUTS, REPO, WorkerProcess, free_port, isolated_topology

pytestmark = pytest.mark.integration

MASK_KEY = "secure-test-mask-key"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def _free_pair() -> int:
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


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    broker = SecureBroker(tmp_path_factory.mktemp("secure-broker"), _free_pair())
    cmd = [sys.executable, "-m", "stream_orch.cli.main", "kafka"]
    up = subprocess.run(
        [*cmd, "up", "--secure", *broker.cli_args()], capture_output=True, text=True, timeout=600
    )
    assert up.returncode == 0, up.stdout + up.stderr
    assert broker.admin_password not in up.stdout + up.stderr  # it says where it is, not what
    try:
        yield broker
    finally:
        subprocess.run([*cmd, "down", "--wipe", *broker.cli_args()], capture_output=True, timeout=120)


def _txn(
    txn_id: str, account: str, customer: str, amount: float, currency: str, country: str, ts: int
) -> dict:
    return {
        **{"txn_id": txn_id, "account_id": account, "customer_id": customer, "amount": amount},
        **{"currency": currency, "merchant_id": "M-1", "channel": "online", "country": country, "ts": ts},
    }


def _inputs(unique_accounts: bool = False) -> tuple[list[dict], list[dict]]:
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
            _txn(
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


def _canon(key: bytes | None, value: bytes | None) -> tuple[bytes | None, bytes | None]:
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


def _driver_outputs(
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
        return {
            t: Counter(_canon(r.raw_key, r.raw_value) for r in d.records(names[t])) for t in FRAUD_OUTPUTS
        }


async def _produce(args: dict[str, Any], topic: str, values: list[dict], key: str) -> None:
    producer = AIOKafkaProducer(**args, acks="all")
    await producer.start()
    try:
        for v in values:
            await producer.send_and_wait(topic, orjson.dumps(v), key=str(v[key]).encode())
    finally:
        await producer.stop()


async def _read_all(
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
                seen[tp.topic].update(_canon(r.key, r.value) for r in records)
            if settle is None and all(sum(seen[t].values()) >= n for t, n in want.items()):
                settle = time.monotonic() + 3.0  # anything extra (a duplicate) shows here
            if settle is not None and time.monotonic() >= settle:
                break
    finally:
        await consumer.stop()
    return seen


def _secrets_absent(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text


async def test_fraud_runs_over_sasl_ssl_with_only_the_planned_acls(
    secure_broker: SecureBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suffix = uuid.uuid4().hex[:8]
    path, names = isolated_topology(
        REPO / "topologies" / "fraud_detection.yaml", tmp_path, suffix, retry_delays=["1s", "1s", "1s"]
    )
    user, password = f"fraud-{suffix}", uuid.uuid4().hex
    await secure_broker.add_user(user, password)
    admin_env = secure_broker.env("admin", secure_broker.admin_password)
    code, out, err = await run_cli(
        "acl", "plan", str(path), "--user", user, "--create-topics", "--apply", env=admin_env
    )
    assert code == 0, err
    planned = out.splitlines()
    assert len(planned) == len(
        plan_acls(load_topology(path).spec, audit_topic=Settings().audit_topic, create_topics=True)
    )
    assert all(line.startswith(f"User:{user} ALLOW ") for line in planned)

    port = free_port()
    w = WorkerProcess(
        path,
        tmp_path / "worker.log",
        env={**secure_broker.env(user, password), "STREAM_ORCH_MASK_KEY": MASK_KEY},
        metrics_port=port,
    )
    monkeypatch.setenv("STREAM_ORCH_MASK_KEY", MASK_KEY)
    profiles, txns = _inputs()
    expected = await asyncio.to_thread(_driver_outputs, path, names, profiles, txns)
    assert sum(sum(c.values()) for c in expected.values()) > 30  # the input reaches several outputs
    args = secure_broker.admin_args()
    try:
        w.start()
        await _wait_for_topics(args, [names["customers"], names["transactions"]])  # the worker makes them
        await _produce(args, names["customers"], profiles, "customer_id")
        clean = await _read_all(args, [names["customers.clean"]], {names["customers.clean"]: 3}, 90)
        assert sum(clean[names["customers.clean"]].values()) == 3, w.log()
        await asyncio.sleep(2)  # the global table follows customers.clean
        await _produce(args, names["transactions"], txns, "account_id")
        topics = [names[t] for t in FRAUD_OUTPUTS]
        want = {names[t]: sum(c.values()) for t, c in expected.items()}
        got = await _read_all(args, topics, want, 120)
        for t in FRAUD_OUTPUTS:
            assert got[names[t]] == expected[t], (t, w.log())  # nothing lost, nothing duplicated
        # no secret in the log, /metrics, the SIGUSR1 dump
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            metrics = await resp.text()
        group = f"{load_topology(path).spec.topology}.score_transactions"
        assert f'stream_orch_consumer_lag_records{{group="{group}"' in metrics  # the lag reader too
        # the tools over SASL_SSL: tail as the admin; lag as the worker's user (its groups only)
        code, out, err = await run_cli(
            "tail", names["transactions.enriched"], "--from-beginning", "-n", "1", env=admin_env
        )
        assert code == 0 and len(out.splitlines()) == 1, err
        code, out, err = await run_cli("lag", "--group", group, env=secure_broker.env(user, password))
        assert code == 0 and names["transactions"] in out, err
        _secrets_absent(out + err, password)
        assert w.proc is not None
        w.proc.send_signal(signal.SIGUSR1)
        await asyncio.sleep(2)
        assert w.terminate() == 0
        text = w.log_path.read_text(errors="replace") + metrics
        assert "Task" in text or "task" in text  # the dump is there
        _secrets_absent(text, password, secure_broker.admin_password)
    finally:
        w.stop()


async def test_wrong_password_fails_fast_with_one_line(secure_broker: SecureBroker, tmp_path: Path) -> None:
    user = f"u-{uuid.uuid4().hex[:6]}"
    await secure_broker.add_user(user, "right-password")
    started = time.monotonic()
    code, out, err = await run_cli(
        "run", str(REPO / "topologies" / "fraud_detection.yaml"), "--metrics-port", "0",
        "--state-dir", str(tmp_path), env=secure_broker.env(user, "wrong-password"), timeout=30,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert code != 0 and elapsed <= 15, (elapsed, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "SCRAM-SHA-512" in lines[0] and secure_broker.address in lines[0] and user in lines[0]
    _secrets_absent(out + err, "wrong-password", "right-password")


async def test_missing_read_on_an_input_is_one_line(secure_broker: SecureBroker, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    path, names = isolated_topology(REPO / "topologies" / "fraud_detection.yaml", tmp_path, suffix)
    user, password = f"noread-{suffix}", uuid.uuid4().hex
    await secure_broker.add_user(user, password)
    denied = names["transactions"]
    acls = [
        a
        for a in plan_acls(load_topology(path).spec, audit_topic=Settings().audit_topic, create_topics=True)
        if not (a.name == denied and a.operation == "READ")
    ]
    admin = AIOKafkaAdminClient(**secure_broker.admin_args())
    await admin.start()
    try:
        await create_acls(admin, [a.codes(principal_of(user)) for a in acls])
    finally:
        await admin.close()
    started = time.monotonic()
    code, out, err = await run_cli(
        "run", str(path), "--metrics-port", "0", "--state-dir", str(tmp_path),
        env=secure_broker.env(user, password), timeout=60,
    )  # fmt: skip
    assert code == 1 and time.monotonic() - started <= 30, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert f"READ on topic '{denied}'" in lines[0] and user in lines[0]
    assert "Traceback" not in out + err


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["run", "--help"],
        ["kafka", "user", "add", "--help"],
        ["acl", "plan", "--help"],
        ["kafka", "up", "--help"],
    ],
)
async def test_help_shows_no_secret(secure_broker: SecureBroker, argv: list[str]) -> None:
    env = secure_broker.env("admin", secure_broker.admin_password)
    code, out, err = await run_cli(*argv, env={**env, "STREAM_ORCH_NEW_USER_PASSWORD": "new-user-secret"})
    assert code == 0, err
    _secrets_absent(out + err, secure_broker.admin_password, "new-user-secret")
    assert "--sasl-password" not in out and "--password" not in out  # never a flag


async def test_missing_write_on_an_output_sends_its_events_to_the_dlq(
    secure_broker: SecureBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user lacks WRITE on fraud.review: nothing is written there, and every event routed
    there goes (with all its outputs) to the DLQ with reason not_authorized; every other event
    comes out as the driver's; nothing lost."""
    suffix = uuid.uuid4().hex[:8]
    path, names = isolated_topology(REPO / "topologies" / "fraud_detection.yaml", tmp_path, suffix)
    user, password = f"nowrite-{suffix}", uuid.uuid4().hex
    await secure_broker.add_user(user, password)
    review = names["fraud.review"]
    acls = [
        a
        for a in plan_acls(load_topology(path).spec, audit_topic=Settings().audit_topic, create_topics=True)
        if a.name != review
    ]
    args = secure_broker.admin_args()
    admin = AIOKafkaAdminClient(**args)
    await admin.start()
    try:
        await create_acls(admin, [a.codes(principal_of(user)) for a in acls])
    finally:
        await admin.close()
    monkeypatch.setenv("STREAM_ORCH_MASK_KEY", MASK_KEY)
    profiles, txns = _inputs(unique_accounts=True)
    allowed = await asyncio.to_thread(_driver_outputs, path, names, profiles, txns)
    assert allowed["fraud.review"]  # with the ACL, the input reaches fraud.review
    # the reference: the driver with the same output denied (a rejected event is undone from the
    # node's state, so later events' velocity can differ from the run with the ACL)
    expected = await asyncio.to_thread(_driver_outputs, path, names, profiles, txns, frozenset({review}))
    assert not expected["fraud.review"]
    denied_ids = {
        orjson.loads(v).get("txn_id")
        for _k, v in (expected["transactions.dlq"] - allowed["transactions.dlq"]).elements()
    }
    assert denied_ids
    w = WorkerProcess(
        path,
        tmp_path / "worker.log",
        env={**secure_broker.env(user, password), "STREAM_ORCH_MASK_KEY": MASK_KEY},
    )
    try:
        w.start()
        await _wait_for_topics(args, [names["customers"], names["transactions"]])  # the worker makes them
        await _produce(args, names["customers"], profiles, "customer_id")
        clean = await _read_all(args, [names["customers.clean"]], {names["customers.clean"]: 3}, 90)
        assert sum(clean[names["customers.clean"]].values()) == 3, w.log()
        await asyncio.sleep(2)
        await _produce(args, names["transactions"], txns, "account_id")
        dlq = names["transactions.dlq"]
        topics = [names[t] for t in FRAUD_OUTPUTS if t != "fraud.review"]
        want = {names[t]: sum(c.values()) for t, c in expected.items() if t != "fraud.review"}
        got = await _read_all(args, topics, want, 120)
        assert w.terminate() == 0
    finally:
        w.stop()
    for t in FRAUD_OUTPUTS:
        if t != "fraud.review":
            assert got[names[t]] == expected[t], (t, w.log())
    # nothing lost: every transaction came out enriched or as a dead letter, a denied one only as that
    enriched = {orjson.loads(v).get("txn_id") for _k, v in got[names["transactions.enriched"]].elements()}
    dead = {orjson.loads(v).get("txn_id") for _k, v in got[dlq].elements()}
    assert enriched | dead == {t["txn_id"] for t in txns}
    assert denied_ids <= dead and not denied_ids & enriched
    log = w.log_path.read_text(errors="replace")
    assert f"lacks WRITE on topic '{review}'" in log and "not_authorized" in log
    assert review not in await _topics(args)  # nothing was ever written there
    _secrets_absent(log, password)


async def _topics(args: dict[str, Any]) -> list[str]:
    admin = AIOKafkaAdminClient(**args)
    await admin.start()
    try:
        return await admin.list_topics()
    finally:
        await admin.close()


async def _wait_for_topics(args: dict[str, Any], topics: list[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not set(topics) <= set(await _topics(args)):
        assert time.monotonic() < deadline, f"{topics} not created within {timeout}s"
        await asyncio.sleep(0.5)


def test_the_brokers_secrets_stay_private(secure_broker: SecureBroker) -> None:
    """Secrets in files only their owner reads, and never in the broker's own logs."""
    root = secure_broker.state / "kafka"
    for path, mode in [
        (root / "secure", 0o700),
        (root / "secure" / "admin.password", 0o600),
        (root / "secure" / "store.password", 0o600),
        (root / "server.properties", 0o600),
    ]:
        assert path.stat().st_mode & 0o777 == mode, path
    store = (root / "secure" / "store.password").read_text().strip()
    logs = "".join(p.read_text(errors="replace") for p in (root / "logs").glob("*.log"))
    assert "SASL_SSL" in logs  # the broker did log its listeners
    _secrets_absent(logs, secure_broker.admin_password, store)


async def test_missing_transactional_id_acl_is_named_and_heals_once_granted(
    secure_broker: SecureBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """exactly_once without WRITE on the transactional ids: the start-up check cannot see it (asking
    would fence a running producer), so each node names it when it fails and starts over; nothing
    is committed meanwhile, and once the ACL is granted the outputs are the driver's: nothing lost."""
    suffix = uuid.uuid4().hex[:8]
    path, names = isolated_topology(REPO / "topologies" / "fraud_detection.yaml", tmp_path, suffix)
    user, password = f"notxn-{suffix}", uuid.uuid4().hex
    await secure_broker.add_user(user, password)
    plan = plan_acls(load_topology(path).spec, audit_topic=Settings().audit_topic, create_topics=True)
    txn = [a for a in plan if a.resource == "TRANSACTIONAL_ID"]
    args = secure_broker.admin_args()
    admin = AIOKafkaAdminClient(**args)
    await admin.start()
    try:
        await create_acls(admin, [a.codes(principal_of(user)) for a in plan if a not in txn])
        monkeypatch.setenv("STREAM_ORCH_MASK_KEY", MASK_KEY)
        profiles, txns = _inputs(unique_accounts=True)
        expected = await asyncio.to_thread(_driver_outputs, path, names, profiles, txns)
        env = {**secure_broker.env(user, password), "STREAM_ORCH_MASK_KEY": MASK_KEY}
        w = WorkerProcess(path, tmp_path / "worker.log", env=env)
        try:
            w.start()
            await _wait_for_topics(args, [names["customers"], names["transactions"]])
            await _produce(args, names["customers"], profiles, "customer_id")
            prefix = f"stream-orch.{load_topology(path).spec.topology}.harmonise_customers."
            deadline = time.monotonic() + 30
            while f"not authorized: WRITE on transactional ids {prefix}*" not in w.log():
                assert time.monotonic() < deadline, w.log()
                await asyncio.sleep(0.5)
            assert not await _topic_has_records(args, names["customers.clean"])  # nothing committed
            await create_acls(admin, [a.codes(principal_of(user)) for a in txn])  # granted: it heals
            clean = await _read_all(args, [names["customers.clean"]], {names["customers.clean"]: 3}, 90)
            assert sum(clean[names["customers.clean"]].values()) == 3, w.log()
            await asyncio.sleep(2)
            await _produce(args, names["transactions"], txns, "account_id")
            want = {names[t]: sum(c.values()) for t, c in expected.items()}
            got = await _read_all(args, [names[t] for t in FRAUD_OUTPUTS], want, 120)
            assert w.terminate() == 0
        finally:
            w.stop()
    finally:
        await admin.close()
    for t in FRAUD_OUTPUTS:
        assert got[names[t]] == expected[t], (t, w.log())


async def _topic_has_records(args: dict[str, Any], topic: str) -> bool:
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
