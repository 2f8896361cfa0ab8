"""PostgresWriter against a real PostgreSQL server (tests/postgres_server.py): rows and offsets in
one transaction, a batch applied again applies nothing, refused rows found without losing the
rest, and a server restart mid-batch retried until the batch commits."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from reliability_harness import delete_topics

from stream_orch.audit.read import read_events
from stream_orch.settings import Settings
from stream_orch.sinks.postgres import PgRow, PostgresWriter
from stream_orch.sinks.postgres_ddl import OFFSETS_DDL, REJECTS_DDL, columns, create_table

SCHEMA = {
    "type": "record", "name": "Row",
    "fields": [
        {"name": "seq", "type": "long"},
        {"name": "account", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}
COLS = columns(SCHEMA)


async def make_tables(dsn: str, table: str, key: list[str] | None, check: bool = False) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for ddl in (OFFSETS_DDL, REJECTS_DDL, create_table(table, COLS, key)):
            await conn.execute(ddl)
        if check:  # the database refuses negative amounts
            await conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT amount_positive CHECK (amount >= 0)")
        if not key:
            await conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT seq_once UNIQUE (seq)")
    finally:
        await conn.close()


def rows_for(records: list[dict], topic: str = "in", partition: int = 0, first: int = 0) -> list[PgRow]:
    return [PgRow(topic, partition, first + i, r) for i, r in enumerate(records)]


def record(seq: int, account: str = "a", amount: float = 1.0) -> dict:
    return {"seq": seq, "account": account, "amount": amount, "ts": 1_700_000_000_000 + seq}


async def fetch(dsn: str, sql: str) -> list:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


async def test_insert_batch_and_offsets_commit_together_and_repeat_applies_nothing(pg_dsn: str) -> None:
    await make_tables(pg_dsn, "payments", None)
    writer = PostgresWriter(pg_dsn, "payments", COLS, group="topo.node/pg", mode="insert")
    batch = rows_for([record(i) for i in range(100)])
    assert await writer.write(batch, {("in", 0): 100}) == [None] * 100
    # the same batch again (a crash after the database's commit, before Kafka's): nothing twice
    assert await writer.write(batch, {("in", 0): 100}) == [None] * 100
    # a batch half old, half new: only the new half lands
    batch2 = rows_for([record(i) for i in range(50, 150)], first=50)
    assert await writer.write(batch2, {("in", 0): 150}) == [None] * 100
    got = await fetch(pg_dsn, "SELECT seq, ts FROM payments ORDER BY seq")
    assert [r["seq"] for r in got] == list(range(150))
    assert got[0]["ts"].timestamp() == 1_700_000_000.0
    assert await writer.stored_offsets([("in", 0), ("in", 1)]) == {("in", 0): 150}
    await writer.close()


async def test_upsert_last_record_per_key_wins(pg_dsn: str) -> None:
    await make_tables(pg_dsn, "balances", ["account"])
    writer = PostgresWriter(pg_dsn, "balances", COLS, group="g/pg", mode="upsert", key=["account"])
    records = [record(i, account=f"acct-{i % 7}", amount=float(i)) for i in range(200)]
    await writer.write(rows_for(records[:120]), {("in", 0): 120})
    await writer.write(rows_for(records[120:], first=120), {("in", 0): 200})
    reference = {r["account"]: r["amount"] for r in records}  # the last per key
    got = {r["account"]: r["amount"] for r in await fetch(pg_dsn, "SELECT account, amount FROM balances")}
    assert got == reference
    await writer.close()


async def test_refused_rows_reported_with_the_database_message_and_the_rest_lands(pg_dsn: str) -> None:
    await make_tables(pg_dsn, "checked", None, check=True)
    writer = PostgresWriter(pg_dsn, "checked", COLS, group="g/pg", mode="insert")
    bad = {17, 400, 401, 999}
    records = [record(i, amount=-1.0 if i in bad else 2.0) for i in range(1000)]
    records[500]["account"] = None  # NOT NULL: refused before it reaches the database
    outcomes = await writer.write(rows_for(records), {("in", 0): 1000})
    refused = {i for i, why in enumerate(outcomes) if why}
    assert refused == bad | {500}
    assert "23514" in outcomes[17] and "amount_positive" in outcomes[17]
    assert "\n" not in outcomes[17] and len(outcomes[17]) <= 512
    assert "account" in outcomes[500]
    got = [r["seq"] for r in await fetch(pg_dsn, "SELECT seq FROM checked ORDER BY seq")]
    assert got == [i for i in range(1000) if i not in refused]
    # applied again: the refused rows are refused again (their dead letters may have been lost)
    again = await writer.write(rows_for(records), {("in", 0): 1000})
    assert {i for i, why in enumerate(again) if why} == refused
    assert again[17] == outcomes[17]
    await writer.close()


async def test_server_restart_mid_stream_retries_until_commit(pg_dsn: str, postgres_server) -> None:
    await make_tables(pg_dsn, "restarted", None)
    states: list[bool] = []
    writer = PostgresWriter(pg_dsn, "restarted", COLS, group="g/pg", mode="insert", backoff=(0.05, 0.5),
                            on_state=lambda up, reason: states.append(up))
    await writer.write(rows_for([record(i) for i in range(10)]), {("in", 0): 10})
    postgres_server.stop()
    pending = asyncio.create_task(
        writer.write(rows_for([record(i) for i in range(10, 20)], first=10), {("in", 0): 20}))
    await asyncio.sleep(1.0)
    assert not pending.done()  # waits for the database, drops nothing
    assert False in states
    await asyncio.to_thread(postgres_server.start)
    assert await asyncio.wait_for(pending, 60) == [None] * 10
    assert states[-1] is True
    got = [r["seq"] for r in await fetch(pg_dsn, "SELECT seq FROM restarted ORDER BY seq")]
    assert got == list(range(20))
    await writer.close()


def test_upsert_needs_key() -> None:
    with pytest.raises(ValueError, match="key"):
        PostgresWriter("postgresql://x", "t", COLS, group="g", mode="upsert")


def test_sink_init_apply_creates_the_tables_once(tmp_path, pg_dsn: str) -> None:
    """`stream-orch sink init --apply` as a process: the tables exist after, and again is no error."""
    import os
    import subprocess
    import sys

    import orjson

    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "row.avsc").write_bytes(orjson.dumps(SCHEMA))
    path = tmp_path / "t.yaml"
    path.write_text(
        "topology: initdb\ntopics:\n  rows: {partitions: 1, key: account}\n  rows.dlq: {partitions: 1}\n"
        "nodes:\n  deliver:\n    input: rows\n    routes:\n      - to:\n"
        "          - {postgres: {dsn_env: INIT_DSN, table: accounts, mode: upsert, key: [account],\n"
        "                        schema: row}}\n"
        "    errors: {dlq: rows.dlq}\n"
    )
    cmd = [sys.executable, "-m", "stream_orch.cli.main", "sink", "init", str(path), "--apply",
           "--schemas", str(schemas)]
    audit_topic = f"audit.initdb.{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "INIT_DSN": pg_dsn, "STREAM_ORCH_AUDIT_TOPIC": audit_topic}
    for _ in range(2):
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "$INIT_DSN: 1 table(s)" in done.stdout and pg_dsn not in done.stdout + done.stderr
    # each --apply run is one audit event, naming the target and its DSN variable, never the DSN
    audit = Settings(audit_topic=audit_topic)
    events = asyncio.run(read_events(audit)).events
    asyncio.run(delete_topics([audit_topic]))
    assert [(e.action, e.topology, e.details) for e in events] == [
        ("sink_init", "initdb", {"targets": ["deliver/postgres"], "dsn_env": ["INIT_DSN"]})
    ] * 2
    assert all(pg_dsn not in e.to_json().decode() for e in events)

    async def columns_of() -> list[tuple[str, str, str]]:
        rows = await fetch(pg_dsn, "SELECT column_name, data_type, is_nullable FROM "
                                   "information_schema.columns WHERE table_name = 'accounts' "
                                   "ORDER BY ordinal_position")
        return [(r["column_name"], r["data_type"], r["is_nullable"]) for r in rows]

    assert asyncio.run(columns_of()) == [
        ("seq", "bigint", "NO"), ("account", "text", "NO"), ("amount", "double precision", "NO"),
        ("ts", "timestamp with time zone", "NO"), ("note", "text", "YES")]
    pk = asyncio.run(fetch(pg_dsn, "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON "
                                   "a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                                   "WHERE i.indrelid = 'accounts'::regclass AND i.indisprimary"))
    assert [r["attname"] for r in pk] == ["account"]
