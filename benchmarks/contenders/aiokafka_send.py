"""Contender: the same aiokafka loop, producing with ``send`` per record.

What most hand-written consumers do. ``send`` only enqueues, and the batch's futures are
awaited once before the commit, so this is the fair record-by-record variant (not
``send_and_wait`` per record, which would be far slower).
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from benchmarks.contenders._aiokafka_common import main, transform


async def produce_each(
    producer: AIOKafkaProducer, topic: str, batches: dict[TopicPartition, list[ConsumerRecord]]
) -> list[asyncio.Future]:
    futures = []
    for records in batches.values():
        for rec in records:
            # the default partitioner on the key: what a hand-written worker relies on
            futures.append(await producer.send(topic, transform(rec.value), key=rec.key))
    return futures


if __name__ == "__main__":
    main(produce_each)
