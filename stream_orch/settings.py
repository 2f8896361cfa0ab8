"""Connection and process settings, read once from ``STREAM_ORCH_*`` variables and CLI flags.

One model serves every command, so a cluster configured for ``run`` is the same cluster
that ``tail``, ``lag`` and ``dlq`` talk to.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream_orch.errors import UserError

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STREAM_ORCH_", extra="ignore")

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Comma-separated host:port list.")
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    client_id: str = "stream-orch"
    metrics_port: int = Field(
        9308,
        ge=0,
        le=65535,
        description="Port of the worker's HTTP server (/metrics, /health, /ready, and /tables when "
        "tables_endpoint is on); 0 disables the server.",
    )
    metrics_host: str = Field(
        "127.0.0.1",
        description="Bind address of the worker's HTTP server, which serves /metrics, /health, /ready and "
        "/ (the list of its paths) to anyone who can reach it, and /tables and /tables/<name>/<key> only "
        "with tables_endpoint and the bearer token. Loopback by default; 0.0.0.0 (every interface) lets "
        "a scraper in another container or host reach it.",
    )
    tables_endpoint: bool = Field(
        False,
        description="Serve table data: /tables (per table and partition: keys, bytes, checkpoint) and "
        "/tables/<name>/<key> (one key's stored value, the fields of the topology's mask steps masked), "
        "each only to requests carrying `Authorization: Bearer <http_token>`. Off: they answer 404.",
    )
    http_token: SecretStr | None = Field(
        None,
        description="Bearer token that /tables requires; from the environment only "
        "(STREAM_ORCH_HTTP_TOKEN), never a flag, never logged. Needed when tables_endpoint is on.",
    )
    admin_reload: bool = Field(
        False,
        description="Serve POST /admin/reload (and /admin/reload?version=V, a rollback) on the worker's "
        "HTTP server; with http_token set it requires `Authorization: Bearer <http_token>`. Off: 404. "
        "SIGHUP and `stream-orch reload PID` work either way.",
    )
    console: bool = Field(
        False,
        description="Serve the operations console at /console on the worker's HTTP server (the page of "
        "`stream-orch console` for this worker's topology, reading this worker's /metrics and the broker).",
    )
    lag_interval_s: float = Field(
        15.0,
        gt=0,
        description="How often a worker reads its own groups' lag (records and seconds) for /metrics.",
    )
    health_stall_seconds: float = Field(
        120.0, gt=0, description="/health fails when a node has lag and no progress for this long."
    )
    global_table_stale_seconds: float = Field(
        60.0,
        gt=0,
        description="/health fails when a global table has not been current for this long "
        "(its follower dead, restarting or stuck).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False
    kafka_port: int = Field(9092, ge=1, le=65535, description="Port of the embedded local broker.")
    state_dir: Path = Field(Path(".state"), description="Local broker data, jars and worker state.")
    static_membership: bool = Field(
        True,
        description=(
            "Join consumer groups as a static member, so a worker restarted after a crash gets its "
            "partitions back at once, without a rebalance of the others."
        ),
    )
    leave_group_on_stop: bool = Field(
        True,
        description=(
            "On a clean stop (SIGTERM, SIGINT), a static member leaves its groups, so the others take "
            "its partitions within about a second. Off: they wait for it up to the 10 s session "
            "timeout (a worker that is back sooner, as in a fast rolling restart, then causes no "
            "rebalance at all)."
        ),
    )
    instance_id: str | None = Field(
        None, description="Static member id of this worker (default: <host>-<slot>, slot per topology)."
    )
    request_timeout_s: float = Field(10.0, gt=0, description="Bound on connecting and on metadata calls.")
    dlq_tracebacks: bool = Field(
        False,
        description="Write the failing exception's stack trace (with the source files' absolute paths) "
        "into dead letters and retries (so.error.stacktrace). Off: they carry the exception's class "
        "and message only (so.error.class, so.error.message).",
    )
    join_read_order: bool = Field(
        True,
        description="A node with a join reads its input and the join's topic in event-time order "
        "(record timestamps), per partition, an interval join's topic ahead of the input by the "
        "join's window (after + grace): the side ahead of that waits until the other has caught up "
        "to within join_read_lead_ms (runtime/readorder.py). Off: each is read as fetched, and one "
        "side can run far ahead of the other for a whole run.",
    )
    join_read_lead_ms: int = Field(
        5000,
        ge=0,
        description="How far, in event time, one side of a join may be read ahead of the other "
        "while the other still has records on the broker. A side read to its end (or empty, or "
        "silent) never holds the other back.",
    )
    join_read_idle_ms: int = Field(
        1000,
        ge=0,
        description="The longest a join's side waits, while the node has nothing else to process, "
        "for the other side's records that the broker has but the fetches do not bring (Kafka "
        "Streams' max.task.idle.ms; 30 s at most while other partitions keep the node busy); then "
        "it is read as fetched until the other side delivers again.",
    )
    max_records_per_s: float | None = Field(
        None,
        gt=0,
        description="Most input records a second each node of the worker processes (`run --shadow "
        "--shadow-rate`); unset: as fast as it can.",
    )

    audit: bool = Field(
        True,
        description="Write an audit record (stream_orch.audit) for worker starts and stops, node restarts, "
        "DLQ replays, ingest runs and `sink init --apply`. Off: nothing is audited (a null log).",
    )
    audit_topic: str = Field(
        "stream_orch.audit",
        min_length=1,
        description="Topic of the audit trail (JSON, keyed by topology, kept 365 days, never compacted); "
        "created on first use.",
    )
    audit_user: str | None = Field(
        None,
        description="Who the audit records name as the user (default: the OS user running the process); "
        "for CI jobs and services that run as a shared account.",
    )

    erasure_key: SecretStr | None = Field(
        None,
        description="Secret key of the HMAC-SHA256 digest by which `forget` names the data subject in its "
        "audit record (never the key itself); from the environment only (STREAM_ORCH_ERASURE_KEY), never "
        "a flag, never logged. Unset: a public demo key, and `forget` says so.",
    )

    def kafka_client_args(self) -> dict[str, Any]:
        """Keyword arguments shared by every aiokafka client we create."""
        args: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": int(self.request_timeout_s * 1000),
        }
        if self.security_protocol.startswith("SASL"):
            args["sasl_mechanism"] = self.sasl_mechanism or "PLAIN"
            args["sasl_plain_username"] = self.sasl_username
            password = self.sasl_password
            args["sasl_plain_password"] = password.get_secret_value() if password else None
        if self.security_protocol.endswith("SSL"):
            for name, path in (
                ("CAFILE", self.ssl_cafile),
                ("CERTFILE", self.ssl_certfile),
                ("KEYFILE", self.ssl_keyfile),
            ):
                if path is not None and not path.is_file():
                    raise UserError(f"STREAM_ORCH_SSL_{name} / --ssl-{name.lower()}: no file {path}")
            try:
                ctx = ssl.create_default_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
            except ssl.SSLError as exc:
                raise UserError(
                    f"STREAM_ORCH_SSL_CAFILE {self.ssl_cafile}: not a PEM certificate ({exc.reason})"
                ) from None
            if self.ssl_certfile:
                keyfile = str(self.ssl_keyfile) if self.ssl_keyfile else None
                ctx.load_cert_chain(str(self.ssl_certfile), keyfile)
            args["ssl_context"] = ctx
        return args

    def tables_token(self) -> str | None:
        """The token /tables requires, None when /tables is off; on without a token is a config
        error (an open /tables would hand table contents to anyone who reaches the port)."""
        if not self.tables_endpoint:
            return None
        token = self.http_token.get_secret_value().strip() if self.http_token else ""
        if not token:
            raise UserError(
                "STREAM_ORCH_TABLES_ENDPOINT / --serve-tables needs a bearer token: set "
                "STREAM_ORCH_HTTP_TOKEN in the environment (e.g. to the output of `openssl rand -hex 32`)"
            )
        return token

    def redacted(self) -> dict[str, Any]:
        """The settings as they may be printed or logged: secrets never leave the process."""
        data = self.model_dump(mode="json")
        for secret in ("sasl_password", "http_token"):
            if data.get(secret):
                data[secret] = "********"
        return data
