"""Contender: hand-written aiokafka forwarding with one ``send_batch`` per partition.

The ceiling of the Python client path: per record only orjson and a dict update; per batch
one produce request per partition. The output partition is the input partition (same key,
same partition count), so key order is kept.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from benchmarks.contenders._aiokafka_common import main, transform


async def produce_batches(
    producer: AIOKafkaProducer, topic: str, batches: dict[TopicPartition, list[ConsumerRecord]]
) -> list[asyncio.Future]:
    futures = []
    for tp, records in batches.items():
        batch = producer.create_batch()
        for rec in records:
            value = transform(rec.value)
            if batch.append(key=rec.key, value=value, timestamp=None) is None:
                futures.append(await producer.send_batch(batch, topic, partition=tp.partition))
                batch = producer.create_batch()
                batch.append(key=rec.key, value=value, timestamp=None)
        if batch.record_count():
            futures.append(await producer.send_batch(batch, topic, partition=tp.partition))
    return futures


if __name__ == "__main__":
    main(produce_batches)
