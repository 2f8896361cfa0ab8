"""Shared fixtures: the real local broker (started if nothing answers) and unique topic names."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import pytest_asyncio
from kafka_helpers import DEFAULT_BOOTSTRAP, unique_name

from stream_orch.broker import BrokerManager
from stream_orch.broker.probe import broker_answers
from tests.topology_harness import ISOLATED, delete_topics_with

REPO = Path(__file__).resolve().parents[1]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def kafka_bootstrap() -> str:
    """Bootstrap address of a real broker: STREAM_ORCH_BOOTSTRAP_SERVERS, default 127.0.0.1:9092.

    If nothing answers at a local address, the broker manager starts one there (and leaves it
    running, so the next test run is fast); a remote address that does not answer fails the test.
    """
    bootstrap = DEFAULT_BOOTSTRAP
    if await broker_answers(bootstrap, timeout_s=5):
        return bootstrap
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if host not in LOCAL_HOSTS:
        pytest.fail(f"no Kafka broker answers at {bootstrap} (STREAM_ORCH_BOOTSTRAP_SERVERS)")
    state_dir = Path(os.environ.get("STREAM_ORCH_STATE_DIR", REPO / ".state"))
    await BrokerManager(state_dir, port=int(port)).up(timeout_s=90)
    return bootstrap


@pytest.fixture
def make_topic(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Factory of topic names unique to this test: ``make_topic("orders")``."""

    def make(suffix: str = "") -> str:
        return unique_name(f"{request.node.name}{'-' + suffix if suffix else ''}")

    return make


@pytest.fixture
def unique_topic(make_topic: Callable[[str], str]) -> str:
    """One topic name unique to this test (the topic is auto-created on first use)."""
    return make_topic("")


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for this session (tests/postgres_server.py), torn down after.

    Skipped only when PostgreSQL is not installed (`.ci/run` installs Debian's `postgresql`).
    """
    from postgres_server import find_bin_dir, remove_server, start_server

    if find_bin_dir() is None:
        pytest.skip("PostgreSQL is not installed (no initdb/pg_ctl under /usr/lib/postgresql/*/bin or PATH)")
    server = start_server()
    try:
        yield server
    finally:
        remove_server(server)


@pytest_asyncio.fixture(loop_scope="session")
async def pg_dsn(postgres_server):
    """A fresh database on the session's server for one test; its DSN. Dropped after the test."""
    import asyncpg

    name = "so_" + unique_name("db").rsplit("-", 1)[1]  # identifiers: lower case, at most 63 bytes
    admin = await asyncpg.connect(postgres_server.dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield postgres_server.dsn.rsplit("/", 1)[0] + f"/{name}"
    admin = await asyncpg.connect(postgres_server.dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(autouse=True)
def _delete_isolated_topics():
    """Tests delete the topics they create: after each test, every topic of a topology copy it
    made with ``isolated_topology`` (inputs, outputs, retry tiers, DLQs, changelogs: they all
    carry the copy's suffix). Torn down after the test's own fixtures, so its workers have
    stopped. Before this, each run of the suite left about twenty copies of the fraud topology on
    the broker (the local broker ran out of heap with ~13k partitions)."""
    yield
    suffixes = list(ISOLATED)
    ISOLATED.clear()
    for suffix in suffixes:
        try:
            asyncio.run(delete_topics_with(suffix))
        except Exception as exc:  # the broker is gone: the test's own result stands
            print(f"could not delete the topics of {suffix}: {exc}")


@pytest.fixture(scope="session", autouse=True)
def _session_audit_topic():
    """Workers and tools started by tests write audit records: into a topic of this test session
    (inherited by worker processes through the environment), deleted at the end, so the suite
    leaves no audit topic behind. Tests that check the audit trail set their own topic."""
    if "STREAM_ORCH_AUDIT_TOPIC" in os.environ:
        yield os.environ["STREAM_ORCH_AUDIT_TOPIC"]
        return
    topic = unique_name("stream_orch.audit.tests")
    os.environ["STREAM_ORCH_AUDIT_TOPIC"] = topic
    try:
        yield topic
    finally:
        del os.environ["STREAM_ORCH_AUDIT_TOPIC"]
        try:
            asyncio.run(delete_topics_with(topic))
        except Exception as exc:  # the broker is gone: the tests' own results stand
            print(f"could not delete the audit topic {topic}: {exc}")
