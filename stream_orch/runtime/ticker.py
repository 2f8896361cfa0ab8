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


class Ticker:
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
        self._schedule = schedule
        self._topic = topic
        self._make_producer = make_producer
        self._owns = owns
        self._node = node
        self._clock_ms = clock_ms
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self.written = 0  # tick records written (for /status)
        self.last_written: int | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"ticker:{self._node}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()

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
            if self._producer is None:
                producer = self._make_producer()
                await producer.start()
                self._producer = producer
            await self._producer.send_and_wait(self._topic, orjson.dumps({"tick": tick}), partition=0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "ticker: could not write the tick record (%r); trying again", exc, extra={"node": self._node}
            )
            producer, self._producer = self._producer, None
            if producer is not None:
                with contextlib.suppress(Exception):
                    await producer.stop()
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
    return Ticker(
        node.schedule.clock(),
        node.input,
        make_producer,
        lambda: tp in runner.assigned and not runner.recovering,
        node=runner.name,
    )
