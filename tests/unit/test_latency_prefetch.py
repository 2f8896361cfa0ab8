"""Records taken while a batch waits for the previous batch's transactions (issue 25): they go
into the next batch, before what is fetched then and in offset order per partition; never more
than a batch's worth; nothing is lost when the wait ends during a fetch; a failed fetch is
raised; a take-over forgets them."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition

from stream_orch.runtime.prefetch import Prefetch

A = TopicPartition("in", 0)
B = TopicPartition("in", 1)


class _Consumer:
    """aiokafka's getmany as the node sees it: takes buffered records (at most max_records),
    else waits for some until timeout_ms; it only ever waits before taking anything."""

    def __init__(self) -> None:
        self.buffer: dict[TopicPartition, list[int]] = {}
        self.arrived = asyncio.Event()
        self.calls: list[int] = []  # max_records of each call
        self.error: Exception | None = None
        self.cancelled = 0  # getmany calls cancelled while waiting

    def push(self, tp: TopicPartition, *offsets: int) -> None:
        self.buffer.setdefault(tp, []).extend(offsets)
        self.arrived.set()

    async def getmany(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[int]]:
        self.calls.append(max_records or 0)
        if not any(self.buffer.values()) and timeout_ms:
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), timeout_ms / 1000)
            except TimeoutError:
                return {}
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        if self.error is not None:
            raise self.error
        out: dict[TopicPartition, list[int]] = {}
        room = max_records if max_records is not None else 10**9
        for tp, records in self.buffer.items():
            taken, self.buffer[tp] = records[:room], records[room:]
            if taken:
                out[tp] = taken
                room -= len(taken)
        return out


async def _ticks(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_records_taken_while_waiting_start_the_next_batch_in_order() -> None:
    consumer = _Consumer()
    prefetch = Prefetch(consumer, limit=100)  # type: ignore[arg-type]
    previous = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(prefetch.gather(previous))
    consumer.push(A, 10, 11)
    await _ticks()
    consumer.push(B, 5)
    consumer.push(A, 12)
    await _ticks()
    assert not waiting.done()  # the previous batch is still in flight
    previous.set_result(None)
    await asyncio.wait_for(waiting, 1)
    consumer.push(A, 13)
    consumer.push(B, 6)
    batch = await prefetch.fetch()
    assert batch == {A: [10, 11, 12, 13], B: [5, 6]}
    assert await prefetch.fetch(timeout_ms=1) == {}  # nothing held twice


async def test_a_batch_worth_is_taken_at_most_and_the_next_fetch_takes_no_more() -> None:
    consumer = _Consumer()
    prefetch = Prefetch(consumer, limit=3)  # type: ignore[arg-type]
    consumer.push(A, *range(5))
    previous = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(prefetch.gather(previous))
    await _ticks()
    assert not waiting.done()  # full: it stops taking, and still waits for the previous batch
    calls = len(consumer.calls)
    previous.set_result(None)
    await asyncio.wait_for(waiting, 1)
    assert await prefetch.fetch() == {A: [0, 1, 2]}
    assert len(consumer.calls) == calls  # full already: the consumer was not asked again
    assert await prefetch.fetch() == {A: [3, 4]}


async def test_the_wait_ending_during_a_fetch_loses_nothing() -> None:
    consumer = _Consumer()
    prefetch = Prefetch(consumer, limit=100)  # type: ignore[arg-type]
    previous = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(prefetch.gather(previous))
    await _ticks()  # the fetch is waiting for records
    previous.set_result(None)
    await asyncio.wait_for(waiting, 1)
    consumer.push(A, 1, 2)
    assert await prefetch.fetch() == {A: [1, 2]}


async def test_a_failed_fetch_is_raised_and_the_previous_batch_still_waited_for() -> None:
    consumer = _Consumer()
    consumer.error = RuntimeError("offset out of range")
    prefetch = Prefetch(consumer, limit=100)  # type: ignore[arg-type]
    previous = asyncio.get_running_loop().create_future()
    consumer.push(A, 1)
    with pytest.raises(RuntimeError, match="offset out of range"):
        await asyncio.wait_for(prefetch.gather(previous), 1)
    assert not previous.done()  # not cancelled: the delivery settles it


async def test_clear_forgets_what_was_taken() -> None:
    consumer = _Consumer()
    prefetch = Prefetch(consumer, limit=100)  # type: ignore[arg-type]
    previous = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(prefetch.gather(previous))
    consumer.push(A, 1, 2)
    await _ticks()
    previous.set_result(None)
    await asyncio.wait_for(waiting, 1)
    prefetch.clear()  # a take-over seeks every partition back to its committed offset
    consumer.push(A, 1)
    assert await prefetch.fetch() == {A: [1]}


async def test_cancelling_the_wait_cancels_its_fetch_and_is_not_swallowed() -> None:
    consumer = _Consumer()
    prefetch = Prefetch(consumer, limit=100)  # type: ignore[arg-type]
    previous = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(prefetch.gather(previous))
    await _ticks()  # its fetch is waiting for records
    waiting.cancel()  # the worker is stopping
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiting, 1)
    assert consumer.cancelled == 1  # no getmany left running behind it
