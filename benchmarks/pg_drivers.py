"""Which PostgreSQL driver, and which statement, writes a batch of rows fastest (issue 21, item 3).

    python -m benchmarks.pg_drivers                  # starts a throw-away server (tests/postgres_server.py)
    python -m benchmarks.pg_drivers --dsn postgresql://user@host:5432/db --rows 100000 --batch 2000

Every variant writes the same rows (id bigint, account text, amount double, ts timestamptz,
flag boolean, n integer) in batches, each batch ONE transaction together with an upsert of its
offset row, as the sink does. Variants, side by side in one run, best of ``--repeat``:

* ``asyncpg copy insert``: ``copy_records_to_table`` straight into the table;
* ``asyncpg copy+upsert``: COPY into a temporary table, then ``INSERT .. SELECT .. ON CONFLICT DO UPDATE``;
* ``asyncpg executemany upsert``: ``INSERT .. VALUES ($1..) ON CONFLICT DO UPDATE`` per row (pipelined);
* the same three through psycopg 3 (async): ``cursor.copy`` (binary) and ``executemany``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

COLUMNS = ["id", "account", "amount", "ts", "flag", "n"]
DDL = ("CREATE TABLE {t} (id bigint PRIMARY KEY, account text NOT NULL, amount double precision,"
       " ts timestamptz, flag boolean, n integer)")
OFFSETS_DDL = ("CREATE TABLE IF NOT EXISTS bench_offsets (grp text, topic text, partition integer,"
               " next_offset bigint, PRIMARY KEY (grp, topic, partition))")
OFFSET_UPSERT = ("INSERT INTO bench_offsets VALUES ('g', 't', 0, {p}) ON CONFLICT (grp, topic, partition)"
                 " DO UPDATE SET next_offset = EXCLUDED.next_offset")
UPSERT_TAIL = (" ON CONFLICT (id) DO UPDATE SET account = EXCLUDED.account, amount = EXCLUDED.amount,"
               " ts = EXCLUDED.ts, flag = EXCLUDED.flag, n = EXCLUDED.n")


def make_rows(count: int) -> list[tuple]:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    return [(i, f"acct-{i % 5000:05d}", i * 0.25, base + timedelta(milliseconds=i), i % 3 == 0, i % 1000)
            for i in range(count)]


def batches(rows: list[tuple], size: int) -> list[list[tuple]]:
    return [rows[i:i + size] for i in range(0, len(rows), size)]


async def asyncpg_variants(dsn: str) -> dict[str, Callable[[str, list[list[tuple]]], Awaitable[None]]]:
    import asyncpg

    async def run(table: str, chunks: list[list[tuple]], write) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for i, chunk in enumerate(chunks):
                async with conn.transaction():
                    await write(conn, table, chunk)
                    await conn.execute(OFFSET_UPSERT.format(p=i))
        finally:
            await conn.close()

    async def copy_insert(conn, table, chunk):
        await conn.copy_records_to_table(table, records=chunk, columns=COLUMNS)

    async def copy_upsert(conn, table, chunk):
        await conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS stage (LIKE {table}) ON COMMIT DELETE ROWS")
        await conn.copy_records_to_table("stage", records=chunk, columns=COLUMNS)
        await conn.execute(f"INSERT INTO {table} SELECT * FROM stage" + UPSERT_TAIL)

    async def many_upsert(conn, table, chunk):
        await conn.executemany(f"INSERT INTO {table} VALUES ($1, $2, $3, $4, $5, $6)" + UPSERT_TAIL, chunk)

    return {
        "asyncpg copy insert": lambda t, c: run(t, c, copy_insert),
        "asyncpg copy+upsert": lambda t, c: run(t, c, copy_upsert),
        "asyncpg executemany upsert": lambda t, c: run(t, c, many_upsert),
    }


async def psycopg_variants(dsn: str) -> dict[str, Callable[[str, list[list[tuple]]], Awaitable[None]]]:
    import psycopg

    async def run(table: str, chunks: list[list[tuple]], write) -> None:
        conn = await psycopg.AsyncConnection.connect(dsn)
        try:
            for i, chunk in enumerate(chunks):
                async with conn.transaction():
                    await write(conn, table, chunk)
                    await conn.execute(OFFSET_UPSERT.format(p=i))
        finally:
            await conn.close()

    async def copy_into(conn, target, chunk):
        async with conn.cursor() as cur:
            cols = ", ".join(COLUMNS)
            async with cur.copy(f"COPY {target} ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["bigint", "text", "double precision", "timestamptz", "boolean", "integer"])
                for row in chunk:
                    await copy.write_row(row)

    async def copy_upsert(conn, table, chunk):
        await conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS stage (LIKE {table}) ON COMMIT DELETE ROWS")
        await copy_into(conn, "stage", chunk)
        await conn.execute(f"INSERT INTO {table} SELECT * FROM stage" + UPSERT_TAIL)

    async def many_upsert(conn, table, chunk):
        async with conn.cursor() as cur:
            await cur.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s, %s)" + UPSERT_TAIL, chunk)

    return {
        "psycopg copy insert": lambda t, c: run(t, c, copy_into),
        "psycopg copy+upsert": lambda t, c: run(t, c, copy_upsert),
        "psycopg executemany upsert": lambda t, c: run(t, c, many_upsert),
    }


async def main_async(dsn: str, rows: int, batch: int, repeat: int) -> None:
    import asyncpg

    chunks = batches(make_rows(rows), batch)
    variants = {**await asyncpg_variants(dsn), **await psycopg_variants(dsn)}
    admin = await asyncpg.connect(dsn)
    await admin.execute(OFFSETS_DDL)
    best: dict[str, float] = {}
    for rep in range(repeat):
        for k, (name, write) in enumerate(variants.items()):  # interleaved: the machine's drift hits all
            table = f"bench_{rep}_{k}"
            await admin.execute(f"DROP TABLE IF EXISTS {table}")
            await admin.execute(DDL.format(t=table))
            start = time.perf_counter()
            await write(table, chunks)
            took = time.perf_counter() - start
            assert await admin.fetchval(f"SELECT count(*) FROM {table}") == rows
            await admin.execute(f"DROP TABLE {table}")
            best[name] = min(best.get(name, took), took)
    await admin.close()
    print(f"{rows} rows, batches of {batch}, one transaction per batch with its offset row; best of {repeat}")
    print(f"{'variant':<30} {'rows/s':>10}")
    for name, took in best.items():
        print(f"{name:<30} {rows / took:>10,.0f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="PostgreSQL to write to (default: a throw-away local server)")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    server = None
    dsn = args.dsn
    if dsn is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from postgres_server import remove_server, start_server

        server = start_server()
        dsn = server.dsn
    try:
        asyncio.run(main_async(dsn, args.rows, args.batch, args.repeat))
    finally:
        if server is not None:
            remove_server(server)


if __name__ == "__main__":
    main()
