"""wait_for_metadata's waiting logic without a broker (our local broker auto-creates topics, so
'a topic that never appears' cannot be shown on it)."""

from __future__ import annotations

import pytest
from aiokafka.errors import KafkaError

from stream_orch.transport.metadata import wait_for_metadata


class _Client:
    def __init__(self, appear_after: dict[str, int]) -> None:
        self.appear_after = appear_after  # topic -> metadata updates until it shows up
        self.updates = 0
        self.added: set[str] = set()

    def add_topic(self, topic: str) -> None:
        self.added.add(topic)

    async def force_metadata_update(self) -> bool:
        self.updates += 1
        return True


class _Consumer:
    def __init__(self, appear_after: dict[str, int]) -> None:
        self._client = _Client(appear_after)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        after = self._client.appear_after.get(topic)
        return {0, 1} if after is not None and self._client.updates >= after else None


async def test_waits_through_metadata_updates_until_every_topic_is_listed() -> None:
    consumer = _Consumer({"a": 0, "b": 3})
    assert await wait_for_metadata(consumer, ["a", "b"]) == {"a": {0, 1}, "b": {0, 1}}  # type: ignore[arg-type]
    assert consumer._client.updates == 3 and consumer._client.added == {"a", "b"}


async def test_names_the_missing_topics_after_the_timeout() -> None:
    consumer = _Consumer({"a": 0})
    with pytest.raises(KafkaError, match="no partition metadata for never, nope after 0s"):
        await wait_for_metadata(consumer, ["a", "nope", "never"], timeout_s=0.3)  # type: ignore[arg-type]
