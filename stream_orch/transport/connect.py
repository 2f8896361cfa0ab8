"""Starting the clients of :mod:`stream_orch.transport.clients` from :class:`Settings`, with a
bounded connect time (the tools, ``dlq inspect/replay`` and ``alerts forward`` use it).

aiokafka retries some failures for a long time; wrapping ``start()`` in a deadline turns a wrong
address or a firewalled port into one clear line instead of a hang or a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

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


async def start_client(client: Client, settings: Settings) -> Client:
    """Start ``client`` within ``settings.request_timeout_s``, or close it and raise a UserError."""
    try:
        await asyncio.wait_for(client.start(), settings.request_timeout_s)
    except (TimeoutError, KafkaError, OSError) as exc:
        with contextlib.suppress(Exception):
            await client.stop()
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
