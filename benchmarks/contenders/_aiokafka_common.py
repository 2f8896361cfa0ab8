"""The consume → transform → produce → commit loop shared by the two aiokafka contenders.

Both read the same way (``getmany``) and commit after the batch's produce futures resolve
(at-least-once); they differ only in how a batch is produced, which is what they compare.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from benchmarks import env

# (producer, output topic, {input partition: records}) -> awaitables that resolve when delivered
ProduceFn = Callable[
    [AIOKafkaProducer, str, dict[TopicPartition, list[ConsumerRecord]]], Awaitable[list[asyncio.Future]]
]


def transform(value: bytes) -> bytes:
    """Parse, add a field, serialise: the minimal per-record work every contender does."""
    record = orjson.loads(value)
    record["forwarded"] = True
    return orjson.dumps(record)


async def forward(produce: ProduceFn) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    consumer = AIOKafkaConsumer(
        env.get(env.INPUT),
        bootstrap_servers=env.bootstrap(),
        group_id=env.get(env.GROUP),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=16 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=env.bootstrap(), acks=1, linger_ms=0, max_batch_size=512 * 1024
    )
    await consumer.start()
    await producer.start()
    out = env.get(env.OUTPUT)
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            if not batches:
                continue
            futures = await produce(producer, out, batches)
            await asyncio.gather(*futures)
            await consumer.commit({tp: recs[-1].offset + 1 for tp, recs in batches.items()})
    finally:
        await asyncio.wait_for(producer.stop(), 10)
        await asyncio.wait_for(consumer.stop(), 10)


def main(produce: ProduceFn) -> None:
    asyncio.run(forward(produce))
