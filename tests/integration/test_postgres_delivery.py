"""PostgreSQL delivery exactly once (issue 21, item 3): real broker, real worker processes, a real
PostgreSQL server (tests/postgres_server.py), under both processing guarantees of the node.

One node reads payments (3 partitions, keyed by account) and writes each to two `postgres:`
targets: ``balances`` (mode upsert, key account: the last payment of each account) and
``ledger`` (mode insert, every payment once, ``seq`` UNIQUE: a payment applied twice would be a
unique violation, refused and dead-lettered, and counted here). 20k payments at 2k/s; mid-stream
the worker is killed with SIGKILL (first test) or PostgreSQL is restarted (second test). The
tables must equal a reference computed from the input: every seq once in ``ledger``, the last
amount of each account in ``balances``, nothing in the DLQ, nothing in stream_orch_rejects.

A third test has the database refuse one payment (a CHECK constraint): exactly that one goes to
the DLQ with the database's message and its bytes, every other one lands.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from ruamel.yaml import YAML

from stream_orch.sinks.postgres_ddl import OFFSETS_DDL, REJECTS_DDL, columns, create_table
from tests import reliability_harness as rh
from tests.topology_harness import free_port, headers_of, wait_for_group

pytestmark = pytest.mark.integration

RECORDS = 20_000
RATE = 2_000
PARTITIONS = 3
SCHEMA = {
    "type": "record", "name": "PgPayment", "namespace": "tests.pg",
    "fields": [
        {"name": "seq", "type": "long"},
        {"name": "account", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}


def payments(n: int) -> list[dict[str, Any]]:
    return [{"seq": i, "account": f"A{i % 997:04d}", "amount": round((i * 7919) % 100_000 / 100, 2),
             "ts": 1_700_000_000_000 + i * 10} for i in range(n)]


def as_input(records: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    return [(r["account"].encode(), orjson.dumps(r)) for r in records]


def setup(tmp_path: Path, processing: str) -> tuple[Path, Path, dict[str, str], str]:
    suffix = uuid.uuid4().hex[:8]
    t = {"in": f"pg.payments.{suffix}", "dlq": f"pg.payments.dlq.{suffix}"}
    name = f"pgdeliver_{suffix}"
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "pg_payment.avsc").write_bytes(orjson.dumps(SCHEMA))
    target = {"dsn_env": "PG_TEST_DSN", "schema": "pg_payment"}
    doc = {
        "topology": name,
        "processing": processing,
        "topics": {t["in"]: {"partitions": PARTITIONS, "key": "account"}, t["dlq"]: {"partitions": 1}},
        "nodes": {"deliver": {
            "input": t["in"],
            "batch_size": 500,
            "routes": [{"to": [
                {"postgres": {**target, "name": "balances", "table": "balances", "mode": "upsert",
                              "key": ["account"]}},
                {"postgres": {**target, "name": "ledger", "table": "ledger", "mode": "insert"}},
            ]}],
            "errors": {"dlq": t["dlq"], "retry": {"delays": ["1s"]}},
        }},
    }
    path = tmp_path / "pgdeliver.yaml"
    with path.open("w") as fh:
        YAML().dump(doc, fh)
    return path, schemas, t, name


async def make_tables(dsn: str, check: bool = False) -> None:
    cols = columns(SCHEMA)
    conn = await asyncpg.connect(dsn)
    try:
        for ddl in (OFFSETS_DDL, REJECTS_DDL, create_table("balances", cols, ["account"]),
                    create_table("ledger", cols, None)):
            await conn.execute(ddl)
        await conn.execute("ALTER TABLE ledger ADD CONSTRAINT ledger_seq_once UNIQUE (seq)")
        if check:
            await conn.execute("ALTER TABLE ledger ADD CONSTRAINT ledger_small CHECK (amount < 999.99)")
    finally:
        await conn.close()


class Db:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    async def fetch(self, sql: str) -> list[asyncpg.Record]:
        for _ in range(100):  # the server may be restarting
            try:
                conn = await asyncpg.connect(self.dsn, timeout=5)
            except (OSError, asyncpg.PostgresError):
                await asyncio.sleep(0.2)
                continue
            try:
                return await conn.fetch(sql)
            finally:
                await conn.close()
        raise AssertionError("database not reachable")

    async def count(self, table: str) -> int:
        return (await self.fetch(f"SELECT count(*) AS n FROM {table}"))[0]["n"]

    async def wait_count(self, table: str, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self.count(table) >= n:
                return True
            await asyncio.sleep(0.5)
        return False


async def get_health(base: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(base + "/health") as resp:
        return await resp.json()


async def health_names_target_down(base: str, timeout: float) -> dict[str, Any] | None:
    """The worker's /health body once it names a target down (the database is stopped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = await get_health(base)
        if body.get("targets_down"):
            return body
        await asyncio.sleep(0.2)
    return None


def start_worker(tmp_path: Path, path: Path, schemas: Path, dsn: str, metrics_port: int = 0) -> Any:
    w = rh.worker(path, tmp_path / "worker.log", metrics_port=metrics_port)
    w.env["PG_TEST_DSN"] = dsn
    return w.start("--schemas", str(schemas))


async def check_tables(
    db: Db, records: list[dict[str, Any]], dlq: list[Any], test: str, **figures: Any
) -> None:
    ledger = [r["seq"] for r in await db.fetch("SELECT seq FROM ledger")]
    balances = {r["account"]: r["amount"] for r in await db.fetch("SELECT account, amount FROM balances")}
    rejects = await db.count("stream_orch_rejects")
    expected_balances = {r["account"]: r["amount"] for r in records}  # the last payment per account
    missing = set(range(len(records))) - set(ledger)
    wrong = {a for a, v in expected_balances.items() if balances.get(a) != v}
    rh.record_result(test, inputs=len(records), ledger_rows=len(ledger), missing=len(missing),
                     applied_twice=len(dlq) + rejects, wrong_balances=len(wrong), **figures)
    assert not missing, sorted(missing)[:10]
    assert len(ledger) == len(records) == len(set(ledger))
    assert dlq == [] and rejects == 0, "a row applied twice is a unique violation, dead-lettered"
    assert not wrong and set(balances) == set(expected_balances)


@pytest.mark.parametrize("processing", ["at_least_once", "exactly_once"])
async def test_kill_9_mid_stream_every_row_once(tmp_path: Path, pg_dsn: str, processing: str) -> None:
    started = time.monotonic()
    path, schemas, t, name = setup(tmp_path, processing)
    await make_tables(pg_dsn)
    db = Db(pg_dsn)
    records = payments(RECORDS)
    try:
        w = start_worker(tmp_path, path, schemas, pg_dsn)
        await wait_for_group(f"{name}.deliver")
        try:
            async with rh.Watcher([t["dlq"]]) as watch:
                producing = asyncio.create_task(rh.produce_paced(t["in"], as_input(records), rate=RATE))
                assert await db.wait_count("ledger", 4000, 60), w.log()
                assert not producing.done(), "killed after the input was all produced: not mid-stream"
                w.kill()
                at_kill = await db.count("ledger")
                await asyncio.sleep(1.0)
                w.start("--schemas", str(schemas))
                assert None not in await producing
                assert await db.wait_count("ledger", RECORDS, 90), w.log()
                await watch.poll(2.0)
                await check_tables(db, records, watch.records[t["dlq"]],
                                   f"postgres: kill -9 mid-stream, {processing}", rows_at_kill=at_kill,
                                   runtime_s=round(time.monotonic() - started, 1))
            assert w.terminate() == 0
        finally:
            w.stop()
    finally:
        await rh.delete_topics([t["in"], t["dlq"], f"{t['in']}.retry.1"])


@pytest.mark.parametrize("processing", ["at_least_once", "exactly_once"])
async def test_postgres_restart_mid_stream_every_row_once(
    tmp_path: Path, pg_dsn: str, postgres_server: Any, processing: str
) -> None:
    started = time.monotonic()
    path, schemas, t, name = setup(tmp_path, processing)
    await make_tables(pg_dsn)
    db = Db(pg_dsn)
    records = payments(RECORDS)
    try:
        w = start_worker(tmp_path, path, schemas, pg_dsn, metrics_port=free_port())
        await wait_for_group(f"{name}.deliver")
        try:
            async with rh.Watcher([t["dlq"]]) as watch:
                producing = asyncio.create_task(rh.produce_paced(t["in"], as_input(records), rate=RATE))
                assert await db.wait_count("ledger", 4000, 60), w.log()
                assert not producing.done(), "restarted after the input was all produced: not mid-stream"
                at_stop = await db.count("ledger")
                await asyncio.to_thread(postgres_server.stop)
                down = await health_names_target_down(w.url, timeout=20)
                await asyncio.to_thread(postgres_server.start)
                assert None not in await producing
                assert await db.wait_count("ledger", RECORDS, 90), w.log()
                await watch.poll(2.0)
                await check_tables(db, records, watch.records[t["dlq"]],
                                   f"postgres: server restart mid-stream, {processing}", rows_at_stop=at_stop,
                                   runtime_s=round(time.monotonic() - started, 1))
                assert down is not None, "/health named no target down while the database was"
                assert down["status"] == "degraded" and set(down["targets_down"]) <= {
                    "deliver/balances", "deliver/ledger"}
                health = await get_health(w.url)
                assert health["status"] == "ok" and "targets_down" not in health
            assert w.terminate() == 0
        finally:
            w.stop()
    finally:
        await rh.delete_topics([t["in"], t["dlq"], f"{t['in']}.retry.1"])


async def test_a_refused_row_goes_to_the_dlq_with_the_database_message(tmp_path: Path, pg_dsn: str) -> None:
    path, schemas, t, name = setup(tmp_path, "exactly_once")
    await make_tables(pg_dsn, check=True)
    db = Db(pg_dsn)
    records = payments(2000)
    records[1234]["amount"] = 999.99  # the ledger's CHECK refuses it; balances takes it
    sent = as_input(records)
    try:
        w = start_worker(tmp_path, path, schemas, pg_dsn)
        await wait_for_group(f"{name}.deliver")
        try:
            async with rh.Watcher([t["dlq"]]) as watch:
                await rh.produce_bulk(t["in"], sent)
                assert await watch.wait(lambda x: x.count(t["dlq"]) >= 1, timeout=60, settle=2.0), w.log()
                assert await db.wait_count("ledger", len(records) - 1, 60)
                dead = watch.records[t["dlq"]]
                assert len(dead) == 1
                h = headers_of(dead[0])
                assert dead[0].value == sent[1234][1], "the dead letter keeps the record's bytes"
                assert h["so.error.reason"].startswith("postgres_refused"), h
                assert "23514" in h["so.error.message"] and "ledger_small" in h["so.error.message"], h
            ledger = {r["seq"] for r in await db.fetch("SELECT seq FROM ledger")}
            assert ledger == set(range(len(records))) - {1234}
            rows = await db.fetch("SELECT amount FROM balances WHERE account = 'A0237'")
            assert rows[0]["amount"] == max((r for r in records if r["account"] == "A0237"),
                                            key=lambda r: r["seq"])["amount"]
            assert w.terminate() == 0
        finally:
            w.stop()
    finally:
        await rh.delete_topics([t["in"], t["dlq"], f"{t['in']}.retry.1"])
