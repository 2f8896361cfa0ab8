"""A sink that keeps what it is given: the topology test driver's stand-in for a destination (its
records are the driver's outputs for the target), and a test double with scripted outcomes."""

from __future__ import annotations

from collections.abc import Callable

from stream_orch.sinks.base import DELIVERED, Outcome, SinkBatch, SinkRecord


class MemorySink:
    def __init__(self, name: str, answer: Callable[[SinkRecord], Outcome] | None = None) -> None:
        self.name = name
        self.received: list[SinkRecord] = []  # every record delivered, in order
        self.assigned: set[tuple[str, int]] = set()
        self._answer = answer

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def on_assign(self, partitions: set[tuple[str, int]]) -> None:
        self.assigned = set(partitions)

    async def deliver(self, records: list[SinkRecord], batch: SinkBatch) -> list[Outcome]:
        outcomes = [self._answer(r) if self._answer else DELIVERED for r in records]
        self.received.extend(r for r, o in zip(records, outcomes, strict=True) if o is DELIVERED)
        return outcomes
