"""Starting the clients of :mod:`stream_orch.transport.clients` from :class:`Settings`, with a
bounded connect time (the tools, ``dlq inspect/replay`` and ``alerts forward`` use it).

aiokafka retries some failures for a long time; wrapping ``start()`` in a deadline turns a wrong
address or a firewalled port into one clear line instead of a hang or a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, KafkaError, SaslAuthenticationFailed

from stream_orch.errors import UserError
from stream_orch.redact import redact_urls
from stream_orch.settings import Settings
from stream_orch.transport import clients

# Connection errors are reported by us as one line; without a handler Python's last-resort
# handler would also print aiokafka's own error logs to stderr. Real handlers still get them.
logging.getLogger("aiokafka").addHandler(logging.NullHandler())

Client = TypeVar("Client", AIOKafkaProducer, AIOKafkaConsumer)


def unreachable(settings: Settings, reason: str = "") -> UserError:
    detail = f": {redact_urls(reason)}" if reason else ""
    where = redact_urls(settings.bootstrap_servers)
    return UserError(
        f"cannot reach Kafka at {where} within {settings.request_timeout_s:g}s{detail} "
        "(check --bootstrap-servers / STREAM_ORCH_BOOTSTRAP_SERVERS)",
        exit_code=3,
    )


def _mechanism(settings: Settings) -> str:
    return f"{settings.security_protocol} {settings.sasl_mechanism or 'PLAIN'}"


async def check_connection(settings: Settings) -> None:
    """Connect (and authenticate) to the first bootstrap address the way every client will; raise
    one line naming the address and, for a refused login or TLS handshake, the mechanism.

    aiokafka's clients only say "Unable to bootstrap" (the reason goes to its log), so a wrong
    password and a firewalled port looked alike; one direct connection tells them apart."""
    args = settings.kafka_client_args()
    address = redact_urls(args.pop("bootstrap_servers").split(",")[0].strip())
    host, _, port = address.rpartition(":")
    args.pop("client_id", None)
    where = f"Kafka at {address}"
    try:
        conn = await asyncio.wait_for(create_conn(host, int(port), **args), settings.request_timeout_s)
    except SaslAuthenticationFailed:
        raise UserError(
            f"{where} refused the login of user {settings.sasl_username!r} ({_mechanism(settings)}): wrong "
            "user or password (check STREAM_ORCH_SASL_USERNAME / STREAM_ORCH_SASL_PASSWORD)",
            exit_code=3,
        ) from None
    except ssl.SSLError as exc:
        raise UserError(
            f"TLS handshake with {where} failed ({settings.security_protocol}): "
            f"{exc.reason or _one_line(exc)} "
            "(check STREAM_ORCH_SSL_CAFILE)",
            exit_code=3,
        ) from None
    except (TimeoutError, OSError, KafkaError, ValueError) as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else _connect_reason(exc, settings)
        raise UserError(
            f"cannot reach {where} within {settings.request_timeout_s:g}s: {reason} "
            "(check --bootstrap-servers / STREAM_ORCH_BOOTSTRAP_SERVERS)",
            exit_code=3,
        ) from None
    conn.close()


def _connect_reason(exc: BaseException, settings: Settings) -> str:
    if (
        isinstance(exc, ConnectionResetError | KafkaConnectionError)
        and settings.security_protocol != "PLAINTEXT"
    ):
        return (
            f"connection closed during the {_mechanism(settings)} handshake (a listener of another protocol?)"
        )
    if isinstance(exc, OSError):
        return "connection refused or host unknown"
    return _one_line(exc)


async def start_client(client: Client, settings: Settings) -> Client:
    """Start ``client`` within ``settings.request_timeout_s``, or close it and raise a UserError."""
    try:
        await asyncio.wait_for(client.start(), settings.request_timeout_s)
    except (TimeoutError, KafkaError, OSError) as exc:
        with contextlib.suppress(Exception):
            await client.stop()
        if isinstance(exc, KafkaConnectionError) and not isinstance(exc, TimeoutError):
            await check_connection(settings)  # a refused login or handshake: say which
        if isinstance(exc, TimeoutError):
            reason = "no answer"
        elif isinstance(exc, KafkaConnectionError | OSError):
            reason = "connection refused or host unknown"
        else:
            reason = _one_line(exc)
        raise unreachable(settings, reason) from None
    return client


async def start_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """A started producer (:func:`stream_orch.transport.clients.producer`); ``overrides`` win
    (e.g. ``linger_ms``)."""
    return await start_client(clients.producer(settings.kafka_client_args(), **overrides), settings)


async def start_consumer(settings: Settings, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    """A started consumer subscribed to ``topics``; without ``group_id`` nothing is committed."""
    return await start_client(clients.consumer(settings.kafka_client_args(), *topics, **overrides), settings)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
