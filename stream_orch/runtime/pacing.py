"""Retry pacing: a retry tier's records wait for their due time without blocking anything else.

Retry tiers are topics read by the node's own consumer. At the first record of a retry partition
whose due time has not come, that partition is paused and rewound to the record, and a timer
resumes it when the record is due: neither the main partitions nor other retry partitions wait,
and nothing busy-waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_orch.reliability import headers as H


class RetryPacer:
    def __init__(self, longest_wait_ms: int = 0) -> None:
        self._longest_wait_ms = longest_wait_ms  # the node's longest retry delay (H.retry_due)
        self._consumer: AIOKafkaConsumer | None = None
        self._timers: dict[TopicPartition, asyncio.TimerHandle] = {}

    def attach(self, consumer: AIOKafkaConsumer | None) -> None:
        self.clear()
        self._consumer = consumer

    def due(self, batches: dict[TopicPartition, list[Any]], tier_of: dict[str, int], now: int) -> None:
        """Cut every retry partition's records back to those due by ``now`` (in place)."""
        for tp, records in batches.items():
            if tier_of[tp.topic]:
                batches[tp] = self._due(tp, records, now)

    def _due(self, tp: TopicPartition, records: list[Any], now: int) -> list[Any]:
        longest = self._longest_wait_ms
        for i, record in enumerate(records):
            due = H.retry_due(record.headers, now, longest)
            if due > now:
                self._pause_until(tp, record.offset, due - now)
                return records[:i]
        return records

    def _pause_until(self, tp: TopicPartition, offset: int, delay_ms: int) -> None:
        assert self._consumer is not None
        self._consumer.pause(tp)
        self._consumer.seek(tp, offset)
        old = self._timers.pop(tp, None)
        if old is not None:
            old.cancel()
        self._timers[tp] = asyncio.get_running_loop().call_later(delay_ms / 1000, self._resume, tp)

    def _resume(self, tp: TopicPartition) -> None:
        self._timers.pop(tp, None)
        if self._consumer is not None and tp in self._consumer.assignment():
            self._consumer.resume(tp)

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions revoked: their timers must not resume them."""
        for tp in partitions:
            handle = self._timers.pop(tp, None)
            if handle is not None:
                handle.cancel()

    def clear(self) -> None:
        """Starting over: every timer cancelled and every paused partition resumed (a retry that
        is still not due is paused again when it is fetched)."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        consumer = self._consumer
        if consumer is not None and (paused := consumer.paused() & consumer.assignment()):
            consumer.resume(*paused)


class RateLimit:
    """At most ``per_second`` input records a second through a node (``run --shadow --shadow-rate``:
    a shadow that must leave the live worker its cores). After a batch of n records the next one
    starts n / per_second seconds after the previous one's slot; time spent idle or behind is not
    saved up for a burst. ``None``: no limit, no wait."""

    def __init__(self, per_second: float | None) -> None:
        self.per_second = per_second
        self._next = 0.0

    def delay(self, records: int, now: float) -> float:
        """Seconds to wait, at monotonic time ``now``, after a batch of ``records``."""
        if not self.per_second:
            return 0.0
        self._next = max(self._next, now) + records / self.per_second
        return self._next - now
