"""The `postgres:` route target: the :class:`~stream_orch.sinks.base.Sink` over a
:class:`~stream_orch.sinks.postgres.PostgresWriter`.

Exactly once, whatever the node's processing guarantee: each batch's rows and the batch's input
offsets commit in one database transaction (``stream_orch_offsets``, keyed by the node's group
and the target's name), and a record the database already holds (its offset below the stored
one) is answered delivered without being written again.

Deliberately unlike the seam's default for a destination that is down: ``deliver`` does not
answer :class:`Retry` when the database cannot be reached; it retries the whole batch inside the
call with backoff until it commits (the node's partitions wait; the other nodes, the health
endpoint and the metrics go on; ``/health`` names the target as down). A retry tier would
deliver a record after later records of its key (an upsert would end with an older value) and,
under at_least_once, a retry record written before a crash would be applied beside the
re-processed original. A row the database refuses is a :class:`Reject` with its message.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from stream_orch.codecs.schemas import SchemaRegistry
from stream_orch.errors import UserError
from stream_orch.sinks.base import DELIVERED, Outcome, Reject, SinkBatch, SinkContext, SinkRecord
from stream_orch.sinks.postgres import PgRow, PostgresWriter
from stream_orch.sinks.postgres_ddl import columns

log = logging.getLogger(__name__)

REASON = "postgres_refused"


class PostgresSink:
    """One `postgres:` target of a node."""

    def __init__(self, spec: Any, ctx: SinkContext) -> None:
        self.name = ctx.name
        self.spec = spec
        self.ctx = ctx
        schemas: SchemaRegistry = ctx.schemas
        self.cols = columns(schemas.raw(spec.schema_))
        self.writer: PostgresWriter | None = None

    async def start(self) -> None:
        dsn = os.environ.get(self.spec.dsn_env)
        if not dsn:
            raise UserError(
                f"node {self.ctx.node}, target {self.name}: environment variable {self.spec.dsn_env} "
                "(the PostgreSQL DSN) is not set"
            )
        self.writer = PostgresWriter(
            dsn,
            self.spec.table,
            self.cols,
            group=f"{self.ctx.group}/{self.name}",
            mode=self.spec.mode,
            key=self.spec.key or (),
            on_state=self._state,
        )

    def _state(self, up: bool, reason: str) -> None:
        self.ctx.state(self.name, up, reason)

    async def stop(self) -> None:
        if self.writer is not None:
            await self.writer.close()

    async def on_assign(self, partitions: set[tuple[str, int]]) -> None:
        """Nothing to read ahead: every batch reads (and locks) its partitions' stored offsets in
        its own transaction, so a batch re-processed after a take-over skips what is held."""

    async def deliver(self, records: list[SinkRecord], batch: SinkBatch) -> list[Outcome]:
        assert self.writer is not None, "deliver before start"
        if not records:
            return []  # nothing to store: offsets alone need not move (a later row is checked anyway)
        rows = [PgRow(r.consumed[0], r.consumed[1], r.consumed[2], r.value) for r in records]
        refused = await self.writer.write(rows, batch.offsets)
        return [DELIVERED if why is None else Reject(REASON, why) for why in refused]
