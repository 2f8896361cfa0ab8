"""Topics the tools create for themselves: the ledgers of ``dlq replay`` and ``ingest``, and
the audit trail."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from stream_orch.settings import Settings
from stream_orch.transport.connect import start_client


async def ensure_compacted_topic(settings: Settings, topic: str) -> None:
    """Create ``topic`` (one partition, compacted) unless it exists: a ledger keeps the last
    record per key, which is all its readers need."""
    await _ensure_topic(settings, topic, {"cleanup.policy": "compact"})


async def ensure_log_topic(settings: Settings, topic: str, retention_ms: int) -> None:
    """Create ``topic`` (one partition: one order for all its readers; deleted after
    ``retention_ms``, never compacted) unless it exists: a log whose every record counts."""
    await _ensure_topic(settings, topic, {"cleanup.policy": "delete", "retention.ms": str(retention_ms)})


async def _ensure_topic(settings: Settings, topic: str, configs: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(**settings.kafka_client_args())
    await start_client(admin, settings)  # type: ignore[type-var]
    try:
        response = await admin.create_topics([NewTopic(topic, 1, 1, topic_configs=configs)])
    except TopicAlreadyExistsError:
        return
    finally:
        await admin.close()
    # the answer carries the refusals (an invalid name, no authorisation): aiokafka does not raise them
    for name, code, *message in response.topic_errors:
        if code and code != TopicAlreadyExistsError.errno:
            raise for_code(code)(f"cannot create topic {name}: {message[0] if message else ''}".rstrip(": "))
