"""The secure local broker (`kafka up --secure`: SASL_SSL, SCRAM-SHA-512, ACLs enforced) as a
separate instance on its own ports and state folder (the shared plaintext broker is never
touched): the fraud topology end to end as a user holding only the ACLs of `acl plan --apply`,
against the test driver on the same input; a wrong password; a missing READ; no secret in the
worker's log, /metrics, SIGUSR1 dump or `--help`."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from kafka_helpers import run_cli

from stream_orch.security.acls import plan_acls, principal_of
from stream_orch.settings import Settings
from stream_orch.topology.loader import load_topology
from stream_orch.transport.security_admin import create_acls
from tests.secure_harness import (
    SecureBroker,
    driver_outputs,
    free_pair,
    inputs,
    list_topics,
    produce,
    read_all,
    secrets_absent,
    topic_has_records,
    wait_for_topics,
)
from tests.topology_harness import FRAUD_OUTPUTS, REPO, WorkerProcess, free_port, isolated_topology

pytestmark = pytest.mark.integration

MASK_KEY = "secure-test-mask-key"


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    broker = SecureBroker(tmp_path_factory.mktemp("secure-broker"), free_pair())
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
    profiles, txns = inputs()
    expected = await asyncio.to_thread(driver_outputs, path, names, profiles, txns)
    assert sum(sum(c.values()) for c in expected.values()) > 30  # the input reaches several outputs
    args = secure_broker.admin_args()
    try:
        w.start()
        await wait_for_topics(args, [names["customers"], names["transactions"]])  # the worker makes them
        await produce(args, names["customers"], profiles, "customer_id")
        clean = await read_all(args, [names["customers.clean"]], {names["customers.clean"]: 3}, 90)
        assert sum(clean[names["customers.clean"]].values()) == 3, w.log()
        await asyncio.sleep(2)  # the global table follows customers.clean
        await produce(args, names["transactions"], txns, "account_id")
        topics = [names[t] for t in FRAUD_OUTPUTS]
        want = {names[t]: sum(c.values()) for t, c in expected.items()}
        got = await read_all(args, topics, want, 120)
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
        secrets_absent(out + err, password)
        assert w.proc is not None
        w.proc.send_signal(signal.SIGUSR1)
        await asyncio.sleep(2)
        assert w.terminate() == 0
        text = w.log_path.read_text(errors="replace") + metrics
        assert "Task" in text or "task" in text  # the dump is there
        secrets_absent(text, password, secure_broker.admin_password)
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
    secrets_absent(out + err, "wrong-password", "right-password")


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
    secrets_absent(out + err, secure_broker.admin_password, "new-user-secret")
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
    profiles, txns = inputs(unique_accounts=True)
    allowed = await asyncio.to_thread(driver_outputs, path, names, profiles, txns)
    assert allowed["fraud.review"]  # with the ACL, the input reaches fraud.review
    # the reference: the driver with the same output denied (a rejected event is undone from the
    # node's state, so later events' velocity can differ from the run with the ACL)
    expected = await asyncio.to_thread(driver_outputs, path, names, profiles, txns, frozenset({review}))
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
        await wait_for_topics(args, [names["customers"], names["transactions"]])  # the worker makes them
        await produce(args, names["customers"], profiles, "customer_id")
        clean = await read_all(args, [names["customers.clean"]], {names["customers.clean"]: 3}, 90)
        assert sum(clean[names["customers.clean"]].values()) == 3, w.log()
        await asyncio.sleep(2)
        await produce(args, names["transactions"], txns, "account_id")
        dlq = names["transactions.dlq"]
        topics = [names[t] for t in FRAUD_OUTPUTS if t != "fraud.review"]
        want = {names[t]: sum(c.values()) for t, c in expected.items() if t != "fraud.review"}
        got = await read_all(args, topics, want, 120)
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
    assert review not in await list_topics(args)  # nothing was ever written there
    secrets_absent(log, password)


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
    secrets_absent(logs, secure_broker.admin_password, store)


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
        profiles, txns = inputs(unique_accounts=True)
        expected = await asyncio.to_thread(driver_outputs, path, names, profiles, txns)
        env = {**secure_broker.env(user, password), "STREAM_ORCH_MASK_KEY": MASK_KEY}
        w = WorkerProcess(path, tmp_path / "worker.log", env=env)
        try:
            w.start()
            await wait_for_topics(args, [names["customers"], names["transactions"]])
            await produce(args, names["customers"], profiles, "customer_id")
            prefix = f"stream-orch.{load_topology(path).spec.topology}.harmonise_customers."
            deadline = time.monotonic() + 30
            while f"not authorized: WRITE on transactional ids {prefix}*" not in w.log():
                assert time.monotonic() < deadline, w.log()
                await asyncio.sleep(0.5)
            assert not await topic_has_records(args, names["customers.clean"])  # nothing committed
            await create_acls(admin, [a.codes(principal_of(user)) for a in txn])  # granted: it heals
            clean = await read_all(args, [names["customers.clean"]], {names["customers.clean"]: 3}, 90)
            assert sum(clean[names["customers.clean"]].values()) == 3, w.log()
            await asyncio.sleep(2)
            await produce(args, names["transactions"], txns, "account_id")
            want = {names[t]: sum(c.values()) for t, c in expected.items()}
            got = await read_all(args, [names[t] for t in FRAUD_OUTPUTS], want, 120)
            assert w.terminate() == 0
        finally:
            w.stop()
    finally:
        await admin.close()
    for t in FRAUD_OUTPUTS:
        assert got[names[t]] == expected[t], (t, w.log())
