"""`stream-orch sink init`: the tables every `postgres:` target of a topology writes, as SQL, and
running that SQL (each target's database from its DSN variable)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from stream_orch.codecs.schemas import SchemaRegistry
from stream_orch.errors import UserError
from stream_orch.sinks.postgres_ddl import OFFSETS_DDL, REJECTS_DDL, columns, create_table
from stream_orch.topology.models import TopologySpec
from stream_orch.topology.models_delivery import external_targets


@dataclass(frozen=True)
class TargetTable:
    node: str
    target: str
    dsn_env: str
    ddl: str


def target_tables(spec: TopologySpec, schemas: SchemaRegistry) -> list[TargetTable]:
    """One CREATE TABLE per `postgres:` target, in node and route order."""
    found = []
    for node_name, node in spec.nodes.items():
        for named in external_targets(node):
            if named.kind != "postgres":
                continue
            target = named.spec
            key = list(target.key or []) if target.mode == "upsert" else None
            ddl = create_table(target.table, columns(schemas.raw(target.schema_)), key)
            found.append(TargetTable(node_name, named.name, target.dsn_env, ddl))
    return found


def script(tables: list[TargetTable]) -> str:
    """The SQL `sink init` prints: the bookkeeping tables, then one statement per target."""
    parts = [
        "-- offsets stored with the rows (exactly once) and rows the database refused",
        OFFSETS_DDL,
        REJECTS_DDL,
    ]
    for t in tables:
        parts.append(f"-- node {t.node}, target {t.target} (DSN from ${t.dsn_env})")
        parts.append(t.ddl)
    return "\n".join(parts) + "\n"


async def apply(tables: list[TargetTable]) -> list[str]:
    """Runs the statements on each target's database (one transaction per database); returns
    one line per database done. An unset DSN variable or a failed statement: UserError."""
    import asyncpg

    by_env: dict[str, list[TargetTable]] = {}
    for t in tables:
        by_env.setdefault(t.dsn_env, []).append(t)
    missing = [env for env in by_env if not os.environ.get(env)]
    if missing:
        raise UserError(f"environment variable {missing[0]} (a PostgreSQL DSN) is not set")
    done = []
    for env, group in by_env.items():
        try:
            conn = await asyncpg.connect(os.environ[env], timeout=10)
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            why = f"{type(exc).__name__}: {exc}"
            raise UserError(f"cannot connect to the database of ${env}: {why}") from None
        try:
            async with conn.transaction():
                for statement in (OFFSETS_DDL, REJECTS_DDL, *(t.ddl for t in group)):
                    await conn.execute(statement)
        except asyncpg.PostgresError as exc:
            raise UserError(f"database of ${env}: {exc.sqlstate}: {exc}") from None
        finally:
            await conn.close()
        done.append(f"${env}: {len(group)} table(s) and the offset tables ready")
    return done
