"""A join's topic's records enter its step before the input's records of the batch
(``NodePipeline._run_joined``): read ahead of the input by the join's window, they move the other
side's time past the input records' bounds first, and the join need not buffer those."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from stream_orch.runtime.pipeline import NodePipeline
from stream_orch.steps.base import Event


class Seen:
    """A step that records the topics of the records it is given, in order, and passes them on."""

    def __init__(self) -> None:
        self.topics: list[list[str]] = []

    async def run(self, events: list[Event], ctx: Any) -> list[Event]:
        self.topics.append([e.topic for e in events])
        return events


def event(topic: str, offset: int) -> Event:
    return Event({"ts": offset}, None, b"{}", [], topic, 0, offset, offset, 0, topic, 0, offset)


async def test_the_joined_stream_enters_its_join_step_before_the_input() -> None:
    before, join = Seen(), Seen()
    pipeline = NodePipeline.__new__(NodePipeline)
    pipeline.steps = [before, join]  # type: ignore[assignment]
    pipeline.step_labels = ["derive", "join"]
    pipeline.event_time_steps = set()  # type: ignore[assignment]
    pipeline.ctx = SimpleNamespace(passed_over=None, step="")  # type: ignore[assignment]
    pipeline.enters_at = {"settlements": 1}
    events = [event("payments", 1), event("settlements", 2), event("payments", 3), event("settlements", 4)]
    out = await pipeline._run_joined(events)
    assert before.topics == [["payments", "payments"]]  # the steps before the join: the input only
    assert join.topics == [["settlements", "settlements", "payments", "payments"]]
    assert [e.offset for e in out] == [2, 4, 1, 3]  # each topic in offset order
