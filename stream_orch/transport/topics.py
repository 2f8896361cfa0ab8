"""Topics the tools create for themselves: the ledgers of ``dlq replay`` and ``ingest``, and
the audit trail."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

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
        replication = await default_replication(admin)
        response = await admin.create_topics([NewTopic(topic, 1, replication, topic_configs=configs)])
    except TopicAlreadyExistsError:
        return
    finally:
        await admin.close()
    # the answer carries the refusals (an invalid name, no authorisation): aiokafka does not raise them
    for name, code, *message in response.topic_errors:
        if code and code != TopicAlreadyExistsError.errno:
            raise for_code(code)(f"cannot create topic {name}: {message[0] if message else ''}".rstrip(": "))


async def default_replication(admin: AIOKafkaAdminClient) -> int:
    """The cluster's ``default.replication.factor`` (1 on a single broker, 3 on a local
    ``--brokers 3`` cluster): the engine's topics follow the cluster rather than a fixed 1.
    aiokafka's CreateTopics (v3) cannot send -1 ("the broker's default"), so it is read from a
    broker's config; 1 when the broker does not say (no DESCRIBE_CONFIGS right)."""
    brokers = sorted(b.nodeId for b in admin._client.cluster.brokers())
    if not brokers:
        return 1
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.BROKER, str(brokers[0]), {"default.replication.factor": None})]
        )
    except KafkaError:  # no DESCRIBE_CONFIGS right: the safe minimum
        return 1
    for response in responses:
        for resource in response.resources:
            for entry in resource[4]:
                if entry[0] == "default.replication.factor" and str(entry[1]).isdigit():
                    return max(1, int(entry[1]))
    return 1
