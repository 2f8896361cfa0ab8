"""Topics the tools create for themselves: the ledgers of ``dlq replay`` and ``ingest``."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from stream_orch.settings import Settings
from stream_orch.transport.connect import start_client


async def ensure_compacted_topic(settings: Settings, topic: str) -> None:
    """Create ``topic`` (one partition, compacted) unless it exists: a ledger keeps the last
    record per key, which is all its readers need."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_args())
    await start_client(admin, settings)  # type: ignore[type-var]
    try:
        await admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"cleanup.policy": "compact"})])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()
