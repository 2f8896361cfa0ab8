"""at_least_once group commits in the background (issue 25): the next batch is handed over while
the previous batch's commit is in flight, commits stay in batch order, at most one waits behind
the one in flight, and a revocation gives them all up."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition

from stream_orch.runtime.delivery import AtLeastOnce, BatchOut

TP = TopicPartition("in", 0)


class _Events:
    def __init__(self) -> None:
        self.committed_offsets: list[int] = []

    def flushed(self, seconds: float) -> None: ...

    def committed(self, offsets: dict[TopicPartition, int], seconds: float) -> None:
        self.committed_offsets.append(offsets[TP])

    def delivered(self, out: object) -> None: ...


class _Group:
    """A group coordinator that answers each commit only when told to."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.answers: dict[int, asyncio.Event] = {}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        offset = offsets[TP]
        self.started.append(offset)
        await self.answers.setdefault(offset, asyncio.Event()).wait()

    def answer(self, offset: int) -> None:
        self.answers.setdefault(offset, asyncio.Event()).set()


class _Producer:
    """Batches without records never reach the producer; the delivery only needs one started."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def _delivery(group: _Group, events: _Events) -> AtLeastOnce:
    delivery = AtLeastOnce(_Producer, group.commit, events, "n")  # type: ignore[arg-type]
    await delivery.assign(set())
    return delivery


def _batch(offset: int) -> BatchOut:
    return BatchOut({}, {}, {TP: offset})


async def _turns(n: int = 30) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_batch_is_handed_over_while_the_previous_commit_is_in_flight() -> None:
    group, events = _Group(), _Events()
    delivery = await _delivery(group, events)
    await delivery.submit(_batch(10))
    second = asyncio.create_task(delivery.submit(_batch(20)))
    await _turns()
    assert group.started == [10]
    assert second.done(), "the hand-over waited for the previous batch's group commit"
    third = asyncio.create_task(delivery.submit(_batch(30)))
    await _turns()
    assert group.started == [10], "commits in batch order: the next starts after the one before"
    assert not third.done(), "at most one commit waits behind the one in flight"
    group.answer(10)
    await _turns()
    assert third.done() and group.started == [10, 20]
    group.answer(20)
    group.answer(30)
    await delivery.settle()
    assert events.committed_offsets == [10, 20, 30]


async def test_a_revocation_gives_up_every_pending_commit() -> None:
    group, events = _Group(), _Events()
    delivery = await _delivery(group, events)
    await delivery.submit(_batch(10))
    await delivery.submit(_batch(20))
    await _turns()
    delivery.drop_commits()
    await delivery.settle(commit=False)  # returns: nothing still waits for the group
    assert events.committed_offsets == []
    assert not delivery.busy
    # the hung commit was cancelled, not left running into the revocation
    await _turns()
    assert group.started == [10]
