"""Route targets outside Kafka: `to: [{http: {...}}]` (imported by
:mod:`stream_orch.topology.models`, whose rules they follow: pydantic models are the single
source of truth of validation, JSON Schema and the reference docs).

An external target is delivered inside the node's batch, before the batch's Kafka writes (see
docs/ARCHITECTURE.md, "Delivering outside Kafka"); this module only describes it. Each has a
``name``, unique in its node, that metrics, the ``so.retry.target`` header of its retries and its
dead letters use; :func:`external_targets` gives every target of a node with its name.

A new kind of target is one model with the target's fields (a subclass of
:class:`ExternalTarget`), one wrapper model whose only field is the kind (``{postgres: {...}}``),
and that wrapper added to :data:`ExternalRoute`.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stream_orch.topology.durations import DurationMs
from stream_orch.topology.naming import Name

if TYPE_CHECKING:
    from stream_orch.topology.models import NodeSpec


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110 token)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ExternalTarget(_Model):
    """What every external target has."""

    # the runtime renders each record as JSON bytes for it (an HTTP body); False: it takes the
    # projected value and the bytes are not made
    sends_json: ClassVar[bool] = True

    name: Name | None = Field(
        None,
        description="Names the target in metrics, in the `so.retry.target` header of its retries and in "
        "its dead letters; unique in the node. Default: the kind (`http`), or `<kind>_<n>` for the n-th "
        "target of that kind in the node when there are several.",
    )
    schema_: str | None = Field(
        None,
        alias="schema",
        description="Schema (in the schemas folder) the record is projected onto, as a topic's schema "
        "projects it; unset: the event's fields as they are.",
    )

    def longest_wait_ms(self) -> int:
        """The longest a destination may ask a retry to wait (the retry pacer's bound)."""
        return 0


class HttpTarget(ExternalTarget):
    """Each record (or array of up to `batch` records) is sent as a JSON body; 2xx is delivered, 5xx,
    a time-out or a refused connection goes through the node's retry tiers then the DLQ, 429 waits
    for `Retry-After`, any other status sends the record to the DLQ at once with the status and the
    start of the response body."""

    url: Annotated[str, Field(min_length=1, pattern=r"^https?://")] = Field(
        description="http:// or https:// URL; `${VAR}` / `${VAR:default}` take parts from the environment "
        "(a missing variable without a default is an error naming its line). Never logged with its "
        "credentials, never in metrics."
    )
    method: Literal["POST", "PUT", "PATCH"] = Field("POST", description="HTTP method of every request.")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description='Request headers; give secrets from the environment (`Authorization: "Bearer '
        '${API_TOKEN}"`). Never logged, never in metrics. `Content-Type` is application/json and '
        "`Idempotency-Key` is set by the engine.",
    )
    timeout: DurationMs = Field(10_000, description="Most time one request may take, connecting included.")
    concurrency: int = Field(8, ge=1, le=256, description="Most requests in flight at once for this target.")
    rate: float | None = Field(None, gt=0, description="Most requests per second (unset: no limit).")
    batch: int = Field(
        1,
        ge=1,
        le=1000,
        description="1: one record per request, its body a JSON object. N: up to N records of one input "
        "partition, in offset order, per request, the body a JSON array; the request's outcome is every "
        "record's.",
    )
    max_retry_after: DurationMs = Field(
        60_000,
        description="A 429's `Retry-After` (seconds or an HTTP date) is honoured up to this long; a "
        "longer one is cut to it.",
    )

    def longest_wait_ms(self) -> int:
        return self.max_retry_after

    @field_validator("url")
    @classmethod
    def _has_host(cls, url: str) -> str:
        try:
            parts = urlsplit(url)
            host, _ = parts.hostname, parts.port  # .port raises for one out of range
        except ValueError as exc:  # a bad port, brackets
            raise ValueError(f"not a URL: {exc}") from None
        if not host or any(c.isspace() for c in url):
            raise ValueError("not a URL with a host (and no spaces)")
        return url

    @field_validator("headers")
    @classmethod
    def _header_fields(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"`{name}` is not an HTTP header name")
            if "\r" in value or "\n" in value:
                raise ValueError(f"the value of header `{name}` has a line break")
            if name.lower() in ("content-type", "idempotency-key", "content-length"):
                raise ValueError(f"header `{name}` is set by the engine")
        return headers


class HttpRoute(_Model):
    kind: ClassVar[str] = "http"
    http: HttpTarget = Field(description="Deliver the route's records to an HTTP API.")

    @property
    def target(self) -> HttpTarget:
        return self.http


class PostgresTarget(ExternalTarget):
    """Rows into a PostgreSQL table, exactly once: each batch's rows and the batch's input offsets
    commit in one database transaction (`stream_orch_offsets`), and a record the table already
    holds after a crash is not written again. A row the database refuses (constraint, type) goes
    to the DLQ with the database's message; a database that cannot be reached is retried with
    backoff inside the batch (the node waits; nothing is dropped) and `/health` names it.
    `stream-orch sink init` prints the tables."""

    sends_json: ClassVar[bool] = False  # rows are made from the projected value

    schema_: str = Field(
        alias="schema",
        description="Schema (in the schemas folder) of the rows: the record is projected onto it and "
        "its fields are the table's columns (`stream-orch sink init` derives the CREATE TABLE).",
    )
    dsn_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = Field(
        description="Name of the environment variable holding the DSN (`postgresql://user:pass@host/db`); "
        "the DSN itself, with its password, is never written in the topology, logged or shown.",
    )
    table: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")] = Field(
        description="Table to write, `table` or `schema.table`."
    )
    mode: Literal["insert", "upsert"] = Field(
        "insert",
        description="insert: every record is a new row (COPY). upsert: a row per `key`, the latest record "
        "wins (INSERT ... ON CONFLICT (key) DO UPDATE).",
    )
    key: list[Annotated[str, Field(min_length=1)]] | None = Field(
        None, min_length=1, description="Key columns (fields of `schema`) of an upsert; required by it."
    )

    @model_validator(mode="after")
    def _upsert_has_key(self) -> PostgresTarget:
        if self.mode == "upsert" and not self.key:
            raise ValueError("mode upsert needs `key`: the columns that identify a row")
        return self


class PostgresRoute(_Model):
    kind: ClassVar[str] = "postgres"
    postgres: PostgresTarget = Field(description="Write the route's records to a PostgreSQL table.")

    @property
    def target(self) -> PostgresTarget:
        return self.postgres


#: Every kind of external route target (an entry of a route's `to:`); each is also a tagged
#: member of `RouteSpec.to` in models.py, its tag the kind.
ExternalRoute = HttpRoute | PostgresRoute
_KINDS = tuple(m.kind for m in typing.get_args(ExternalRoute) or (ExternalRoute,))


def route_entry_tag(value: Any) -> str:
    """Which member of `to:` an entry is: `topic` (a name), a target kind (a mapping with that
    key: `http`), else `target` (`{topic: ..., key: ...}`). Chosen by shape, so a mistake is
    reported against the member the user meant, not every member of the union."""
    if isinstance(value, dict):
        return next((kind for kind in _KINDS if kind in value), "target")
    if isinstance(value, BaseModel):
        return getattr(value, "kind", "target")
    return "topic"


@dataclass(frozen=True)
class NamedTarget:
    """An external target of a node with its name (given, or derived)."""

    route: int  # index of the route in the node
    position: int  # index in the route's `to:`
    kind: str
    name: str
    spec: ExternalTarget


def external_targets(node: NodeSpec) -> list[NamedTarget]:
    """The node's external targets in route order, each with its name: the one it is given, else
    its kind when it is the only target of that kind without a name, else ``<kind>_<n>`` (n counts
    the node's targets of that kind from 1). Two with the same name are a lint error."""
    found: list[tuple[int, int, str, ExternalTarget]] = []
    for i, route in enumerate(node.routes):
        for j, entry in enumerate(route.to):
            if isinstance(entry, ExternalRoute):
                found.append((i, j, entry.kind, entry.target))
    unnamed: dict[str, int] = {}
    for _, _, kind, target in found:
        if target.name is None:
            unnamed[kind] = unnamed.get(kind, 0) + 1
    counts: dict[str, int] = {}
    named = []
    for i, j, kind, target in found:
        counts[kind] = counts.get(kind, 0) + 1
        name = target.name
        if name is None:
            name = kind if unnamed[kind] == 1 else f"{kind}_{counts[kind]}"
        named.append(NamedTarget(i, j, kind, name, target))
    return named
