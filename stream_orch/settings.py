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
    metrics_port: int = Field(9308, ge=0, le=65535, description="0 disables the HTTP server.")
    metrics_host: str = Field("0.0.0.0", description="Bind address of /metrics, /health and /ready.")
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
            "Join consumer groups as a static member, so a restarted worker gets its partitions back "
            "at once (a clean stop then leaves them idle for the 10 s session timeout)."
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
            ctx = ssl.create_default_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
            if self.ssl_certfile:
                keyfile = str(self.ssl_keyfile) if self.ssl_keyfile else None
                ctx.load_cert_chain(str(self.ssl_certfile), keyfile)
            args["ssl_context"] = ctx
        return args

    def redacted(self) -> dict[str, Any]:
        """The settings as they may be printed or logged: secrets never leave the process."""
        data = self.model_dump(mode="json")
        if data.get("sasl_password"):
            data["sasl_password"] = "********"
        return data
