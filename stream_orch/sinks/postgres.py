"""Rows of a batch and that batch's input offsets into PostgreSQL in ONE transaction (asyncpg).

Exactly once without a transaction spanning Kafka and the database (the offsets-in-the-sink
pattern): the transaction that writes a batch's rows also raises, per input partition, the
``next_offset`` kept in ``stream_orch_offsets`` for (group/target, topic, partition). A batch
processed again after a crash (the database committed, Kafka's commit did not land) finds its
records below the stored offset and applies nothing: those rows are *skipped*, not re-written.
We skip rather than seek the consumer past them, because the node's Kafka outputs of those
records must still be produced again in the batch whose Kafka transaction was lost.

The offset rows of the batch's partitions are locked before the skip decision, so a previous
owner of the partition still writing (a zombie after a rebalance) is serialised behind, or
ahead of, this batch and both see each other's offsets.

A row the database refuses (class 22 data exception, 23 integrity violation, or a value the
column cannot hold) aborts the batch's transaction (the fast path has no savepoints); the batch
is then written again, halving the failed chunk under savepoints, so the rest of the batch
still lands in one transaction. Each refused row is reported with the database's message (one
line, bounded) and remembered in ``stream_orch_rejects``, so a batch applied again
dead-letters it again instead of calling it delivered. Anything else (connection refused or
lost, the server shutting down, a missing table) fails the whole transaction: the batch is
retried with backoff until it commits, and ``on_state`` says the target is down meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from stream_orch.sinks.postgres_ddl import (
    OFFSETS_TABLE,
    REJECTS_TABLE,
    Column,
    ColumnValueError,
    quote_ident,
    quote_table,
    row_converter,
)

log = logging.getLogger(__name__)

MAX_REASON = 512
TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class PgRow:
    """One record's row: where it was read (topic, partition, offset) and its fields."""

    topic: str
    partition: int
    offset: int
    record: dict[str, Any]


def one_line(text: str, limit: int = MAX_REASON) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def db_message(exc: BaseException) -> str:
    """The database's words for a refused row: SQLSTATE, message and detail, one bounded line."""
    state = getattr(exc, "sqlstate", None)
    parts = [f"{state}:" if state else f"{type(exc).__name__}:", str(exc)]
    detail = getattr(exc, "detail", None)
    if detail:
        parts.append(f"({detail})")
    return one_line(" ".join(parts))


def is_row_error(exc: BaseException) -> bool:
    """The row's fault (bad value, constraint), not the database's or the connection's."""
    if isinstance(exc, asyncpg.DataError | asyncpg.IntegrityConstraintViolationError):
        return True
    state = getattr(exc, "sqlstate", None) or ""
    return state[:2] in ("22", "23")


class PostgresWriter:
    """Writes one target's table; one connection, one batch at a time."""

    def __init__(
        self,
        dsn: str,
        table: str,
        cols: list[Column],
        group: str,
        mode: Literal["insert", "upsert"] = "insert",
        key: Sequence[str] = (),
        connect_timeout: float = 10.0,
        backoff: tuple[float, float] = (0.2, 5.0),
        on_state: Callable[[bool, str], None] | None = None,
    ) -> None:
        if mode == "upsert" and not key:
            raise ValueError("mode upsert needs key columns")
        self.dsn = dsn
        self.table = table
        self.cols = cols
        self.group = group
        self.mode = mode
        self.key = list(key)
        self.connect_timeout = connect_timeout
        self.backoff = backoff
        self.on_state = on_state or (lambda up, reason: None)
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._names = [c.name for c in cols]
        self._row = row_converter(cols)
        self._key_idx = [self._names.index(k) for k in self.key]
        qt = quote_table(table)
        col_list = ", ".join(c.quoted for c in cols)
        self._stage = "so_stage_" + "".join(ch if ch.isalnum() else "_" for ch in table)
        self._stage_sql = (
            f"CREATE TEMP TABLE IF NOT EXISTS {quote_ident(self._stage)} ON COMMIT DELETE ROWS AS "
            f"SELECT {col_list} FROM {qt} WITH NO DATA"
        )
        others = [c.quoted for c in cols if c.name not in self.key]
        action = (
            "DO UPDATE SET " + ", ".join(f"{o} = EXCLUDED.{o}" for o in others) if others else "DO NOTHING"
        )
        self._upsert_sql = (
            f"INSERT INTO {qt} ({col_list}) SELECT {col_list} FROM {quote_ident(self._stage)} "
            f"ON CONFLICT ({', '.join(quote_ident(k) for k in self.key)}) {action}"
        )
        schema, _, name = table.rpartition(".")
        self._copy_target = {"table_name": name, "schema_name": schema or None}

    # ------------------------------------------------------------------ connection

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self.dsn, timeout=self.connect_timeout)
        return self._conn

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), 5)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                conn.terminate()

    async def _with_retry(self, work: Callable[[asyncpg.Connection], Any]) -> Any:
        """Runs ``work`` until it completes; a failure that is not a row's retries with backoff."""
        delay, cap = self.backoff
        attempt = 0
        while True:
            try:
                async with self._lock:
                    result = await work(await self._connection())
                if attempt:
                    log.info("postgres target %s is reachable again", self.table)
                self.on_state(True, "")
                return result
            except asyncio.CancelledError:
                await self._drop_connection()
                raise
            except Exception as exc:  # every other failure: retried, never dropped
                attempt += 1
                reason = one_line(f"{type(exc).__name__}: {getattr(exc, 'sqlstate', '') or ''} {exc}", 200)
                self.on_state(False, reason)
                if attempt == 1 or attempt % 20 == 0:
                    log.warning("postgres target %s: %s; retrying (attempt %d)", self.table, reason, attempt)
                await self._drop_connection()
                await asyncio.sleep(min(cap, delay * 2 ** min(attempt - 1, 10)) * (0.5 + random.random() / 2))

    # ------------------------------------------------------------------ offsets

    async def stored_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The next offsets the database holds for these partitions (absent: nothing written)."""

        async def read(conn: asyncpg.Connection) -> dict[TopicPartition, int]:
            rows = await conn.fetch(
                f"SELECT topic, partition, next_offset FROM {OFFSETS_TABLE} WHERE grp = $1 AND "
                "(topic, partition) IN (SELECT * FROM unnest($2::text[], $3::int[]))",
                self.group, [t for t, _ in partitions], [p for _, p in partitions],
            )
            return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}

        return await self._with_retry(read)

    # ------------------------------------------------------------------ writing

    async def write(self, rows: Sequence[PgRow], next_offsets: dict[TopicPartition, int]) -> list[str | None]:
        """Applies ``rows`` and stores ``next_offsets`` in one transaction; per row None (written,
        or already written by an earlier attempt) or the reason it was refused."""
        return await self._with_retry(lambda conn: self._write_once(conn, rows, next_offsets))

    async def _write_once(
        self, conn: asyncpg.Connection, rows: Sequence[PgRow], next_offsets: dict[TopicPartition, int]
    ) -> list[str | None]:
        try:
            return await self._transaction(conn, rows, next_offsets, bisect=False)
        except Exception as exc:
            if not is_row_error(exc):
                raise
        # a row refused on the fast path aborted its transaction: again, halving under savepoints
        return await self._transaction(conn, rows, next_offsets, bisect=True)

    async def _transaction(
        self,
        conn: asyncpg.Connection,
        rows: Sequence[PgRow],
        next_offsets: dict[TopicPartition, int],
        bisect: bool,
    ) -> list[str | None]:
        parts = sorted(next_offsets)  # one lock order for every writer: no deadlock between two
        topics, nums = [t for t, _ in parts], [p for _, p in parts]
        outcomes: list[str | None] = [None] * len(rows)
        async with conn.transaction():
            # one round trip: the offset rows exist, are locked (the no-op update takes the row
            # lock), and say what is held
            stored = {
                (r["topic"], r["partition"]): r["next_offset"]
                for r in await conn.fetch(
                    f"INSERT INTO {OFFSETS_TABLE} AS o (grp, topic, partition, next_offset) "
                    "SELECT $1, t, p, 0 FROM unnest($2::text[], $3::int[]) AS u(t, p) "
                    "ON CONFLICT (grp, topic, partition) DO UPDATE SET next_offset = o.next_offset "
                    "RETURNING topic, partition, next_offset",
                    self.group, topics, nums,
                )
            }
            fresh: list[tuple[int, tuple[Any, ...]]] = []
            seen: list[int] = []  # already written (or refused) by an earlier attempt
            for i, row in enumerate(rows):
                if row.offset < stored.get((row.topic, row.partition), 0):
                    seen.append(i)
                    continue
                try:
                    fresh.append((i, self._row(row.record)))
                except ColumnValueError as exc:
                    outcomes[i] = one_line(str(exc))
            if seen:
                await self._rejected_before(conn, rows, seen, outcomes)
            if fresh and bisect:
                await self._apply(conn, fresh, outcomes)
            elif fresh:
                await self._write_chunk(conn, [values for _, values in fresh])
            before = set(seen)
            refused = [(rows[i], why) for i, why in enumerate(outcomes) if why and i not in before]
            if refused:
                await conn.executemany(
                    f'INSERT INTO {REJECTS_TABLE} (grp, topic, partition, "offset", reason) '
                    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    [(self.group, r.topic, r.partition, r.offset, why) for r, why in refused],
                )
            await conn.execute(
                f"UPDATE {OFFSETS_TABLE} o SET next_offset = GREATEST(o.next_offset, u.n) "
                "FROM unnest($2::text[], $3::int[], $4::bigint[]) AS u(t, p, n) "
                "WHERE o.grp = $1 AND o.topic = u.t AND o.partition = u.p",
                self.group, topics, nums, [next_offsets[tp] for tp in parts],
            )
        return outcomes

    async def _rejected_before(
        self, conn: asyncpg.Connection, rows: Sequence[PgRow], seen: list[int], outcomes: list[str | None]
    ) -> None:
        found = await conn.fetch(
            f'SELECT topic, partition, "offset", reason FROM {REJECTS_TABLE} WHERE grp = $1 AND '
            '(topic, partition, "offset") IN (SELECT * FROM unnest($2::text[], $3::int[], $4::bigint[]))',
            self.group, [rows[i].topic for i in seen], [rows[i].partition for i in seen],
            [rows[i].offset for i in seen],
        )
        reasons = {(r["topic"], r["partition"], r["offset"]): r["reason"] for r in found}
        for i in seen:
            outcomes[i] = reasons.get((rows[i].topic, rows[i].partition, rows[i].offset))

    async def _apply(
        self, conn: asyncpg.Connection, chunk: list[tuple[int, tuple[Any, ...]]], outcomes: list[str | None]
    ) -> None:
        """Writes ``chunk`` under a savepoint; a row error halves it until the refused rows are alone."""
        try:
            async with conn.transaction():  # a savepoint inside the batch's transaction
                await self._write_chunk(conn, [values for _, values in chunk])
        except Exception as exc:
            if not is_row_error(exc):
                raise
            if len(chunk) == 1:
                outcomes[chunk[0][0]] = db_message(exc)
                return
            half = len(chunk) // 2
            await self._apply(conn, chunk[:half], outcomes)
            await self._apply(conn, chunk[half:], outcomes)

    async def _write_chunk(self, conn: asyncpg.Connection, values: list[tuple[Any, ...]]) -> None:
        if self.mode == "insert":
            await conn.copy_records_to_table(records=values, columns=self._names, **self._copy_target)
            return
        # upsert: one row per key (the last wins, as it would one statement at a time); ON CONFLICT
        # refuses to touch a row twice in one statement
        last: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        for v in values:
            last[tuple(v[i] for i in self._key_idx)] = v
        await conn.execute(self._stage_sql)
        await conn.execute(f"TRUNCATE {quote_ident(self._stage)}")
        await conn.copy_records_to_table(self._stage, records=list(last.values()), columns=self._names)
        await conn.execute(self._upsert_sql)
