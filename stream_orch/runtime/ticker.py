"""The ticker of a scheduled node: while this worker owns the node's ticks partition, it writes
a tick record ``{"tick": <epoch ms>}`` to it when a tick falls due (see
:mod:`stream_orch.topology.schedule_expand` for the whole design).

On taking the partition over it writes one for the latest tick due at once, so the node catches
up on what it missed while nobody owned it (the ``tick`` step decides what fires, per
``catch_up``, from the last tick fired). A tick record written twice (by two workers during a
rebalance, or again after a restart) is harmless: the step fires nothing for a tick at or before
its last. The records are written with a plain idempotent producer, outside the node's
transactions: they are the node's input, like records from any producer.

A failed write is logged and tried again a second later; it never stops the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from stream_orch.topology.schedule_clock import Schedule

log = logging.getLogger(__name__)

RETRY_S = 1.0
IDLE_S = 0.5  # how often a worker that does not own the partition looks again


class _BackgroundWriter:
    """A task of the node that writes records with a producer of its own (made on first use,
    dropped after a failed write so the next one starts afresh); subclasses say what ``_run``
    writes."""

    name = "writer"

    def __init__(self, make_producer: Callable[[], AIOKafkaProducer], node: str) -> None:
        self._make_producer = make_producer
        self._node = node
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self.written = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"{self.name}:{self._node}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._drop_producer()

    async def _run(self) -> None:
        raise NotImplementedError

    async def _started_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = self._make_producer()
            await producer.start()
            self._producer = producer
        return self._producer

    async def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()


class Ticker(_BackgroundWriter):
    name = "ticker"

    def __init__(
        self,
        schedule: Schedule,
        topic: str,
        make_producer: Callable[[], AIOKafkaProducer],
        owns: Callable[[], bool],
        *,
        node: str,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        super().__init__(make_producer, node)
        self._schedule = schedule
        self._topic = topic
        self._owns = owns
        self._clock_ms = clock_ms
        self.last_written: int | None = None  # `written`: tick records written
        self.step: Any = None  # the node's tick step: what it fired (metrics)

    async def _run(self) -> None:
        owned = False
        while True:
            if not self._owns():
                owned = False
                await asyncio.sleep(IDLE_S)
                continue
            now = self._clock_ms()
            due = self._schedule.latest_at_or_before(now)
            if not owned or (due is not None and (self.last_written is None or due > self.last_written)):
                owned = True  # taken over: announce the latest tick due, for the catch-up
                if due is not None and not await self._write(due):
                    owned = False
                    await asyncio.sleep(RETRY_S)
                    continue
            wait_ms = self._schedule.next_after(now) - self._clock_ms()
            await asyncio.sleep(min(max(wait_ms, 0) / 1000 + 0.005, IDLE_S))

    async def _write(self, tick: int) -> bool:
        try:
            producer = await self._started_producer()
            await producer.send_and_wait(self._topic, orjson.dumps({"tick": tick}), partition=0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "ticker: could not write the tick record (%r); trying again", exc, extra={"node": self._node}
            )
            await self._drop_producer()
            return False
        self.written += 1
        self.last_written = tick
        return True


def ticker_for(runner: Any, make_producer: Callable[[], AIOKafkaProducer]) -> Ticker | None:
    """The ticker of ``runner``'s node if it is a scheduled one, else None."""
    node = runner.node
    if node.schedule is None:
        return None
    from aiokafka import TopicPartition

    tp = TopicPartition(node.input, 0)
    ticker = Ticker(
        node.schedule.clock(),
        node.input,
        make_producer,
        lambda: tp in runner.assigned and not runner.recovering,
        node=runner.name,
    )
    ticker.step = runner.pipeline_steps[0]  # the node's `tick` step (schedule_expand puts it first)
    return ticker


class Punctuator(_BackgroundWriter):
    """A node's ``punctuate``: to each input partition this worker owns that has had no record for
    ``every`` (by this worker's clock), write a punctuation record: an empty key, no value, headers
    ``so.wm.only`` and ``so.punct: <now - lateness>``. The node reads it like any record of the
    partition (so its window results land in that batch's transaction, and after a crash the
    punctuation is read again with the rest); its window steps move the partition's watermark to
    that time (:mod:`stream_orch.steps.window_emit`). A partition keeps getting one per ``every``
    while it stays idle. A failed write is logged and tried again at the next look."""

    name = "punctuator"

    def __init__(
        self,
        every_ms: int,
        lateness_ms: int,
        make_producer: Callable[[], AIOKafkaProducer],
        idle_partitions: Callable[[float], list[Any]],
        *,
        node: str,
    ) -> None:
        super().__init__(make_producer, node)
        self._every_s = every_ms / 1000
        self._lateness_ms = lateness_ms
        self._idle_partitions = idle_partitions

    async def _run(self) -> None:
        from stream_orch.reliability.headers import PUNCTUATION, WATERMARK_ONLY

        while True:
            await asyncio.sleep(min(self._every_s / 2, IDLE_S))
            idle = self._idle_partitions(self._every_s)
            if not idle:
                continue
            mark = str(int(time.time() * 1000) - self._lateness_ms).encode()
            headers = [(WATERMARK_ONLY, b""), (PUNCTUATION, mark)]
            try:
                producer = await self._started_producer()
                for tp in idle:
                    # an empty key: aiokafka sends no record without a key or a value
                    await producer.send_and_wait(
                        tp.topic, None, key=b"", partition=tp.partition, headers=headers
                    )
                    self.written += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("punctuator: could not write (%r); trying again", exc, extra={"node": self._node})
                await self._drop_producer()


class Quiet:
    """When each input partition of a node last had a record (monotonic s), for the punctuator."""

    def __init__(self, runner: Any) -> None:
        self._runner = runner
        self._heard: dict[Any, float] = {}

    def heard(self, partitions: Any) -> None:
        now = time.monotonic()
        for tp in partitions:
            self._heard[tp] = now

    def idle(self, every_s: float) -> list[Any]:
        """The owned input partitions silent for ``every_s``; each counts as heard now (its
        punctuation is on its way: the next one is due ``every_s`` later)."""
        runner = self._runner
        if runner.recovering:
            return []
        now = time.monotonic()
        out = []
        for tp in runner.assigned:
            if tp.topic != runner.node.input:
                continue
            last = self._heard.setdefault(tp, now)  # taken over now: silent from here
            if now - last >= every_s:
                out.append(tp)
                self._heard[tp] = now
        return out


def punctuator_for(
    runner: Any, make_producer: Callable[[], AIOKafkaProducer]
) -> tuple[Punctuator, Quiet] | None:
    """The punctuator of ``runner``'s node if it has ``punctuate``, with what feeds it."""
    spec = runner.node.punctuate
    if spec is None:
        return None
    quiet = Quiet(runner)
    return Punctuator(spec.every, spec.lateness, make_producer, quiet.idle, node=runner.name), quiet
