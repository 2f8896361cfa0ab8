"""Contender: exactly-once forwarding with confluent-kafka (librdkafka) and KIP-447.

One transactional producer for the whole process: each batch's outputs and its input offsets go
in one transaction, the offsets sent with the consumer's group metadata, so the broker fences a
zombie by the group's generation (KIP-447) and one producer serves every partition the process
owns. The engine, on aiokafka (which cannot send the group metadata), keeps one transactional
producer per input partition instead. Issue 25 asks whether this path wins by a wide margin:
compare it with engine_forward_eos and kstreams_forward_eos (exactly_once_v2, also KIP-447) in
one run. The output partition is the input partition, as in aiokafka_batch.
"""

from __future__ import annotations

import signal

from confluent_kafka import Consumer, Producer

from benchmarks import env
from benchmarks.contenders._aiokafka_common import transform

BATCH = 5000


def main() -> None:
    stopping = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    group = env.get(env.GROUP)
    consumer = Consumer(
        {
            "bootstrap.servers": env.bootstrap(),
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "fetch.max.bytes": 16 * 1024 * 1024,
            "max.partition.fetch.bytes": 4 * 1024 * 1024,
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": env.bootstrap(),
            "transactional.id": f"{group}.ck",
            "linger.ms": 5,
            "batch.size": 512 * 1024,
        }
    )
    producer.init_transactions()
    consumer.subscribe([env.get(env.INPUT)])
    out = env.get(env.OUTPUT)
    try:
        while not stopping:
            messages = consumer.consume(num_messages=BATCH, timeout=0.2)
            if not messages:
                continue
            producer.begin_transaction()
            for m in messages:
                if m.error():
                    raise RuntimeError(str(m.error()))
                while True:
                    try:
                        producer.produce(out, transform(m.value()), m.key(), partition=m.partition())
                        break
                    except BufferError:  # the local queue is full: let librdkafka send some
                        producer.poll(0.05)
            positions = consumer.position(consumer.assignment())
            producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata())
            producer.commit_transaction()
    finally:
        consumer.close()


if __name__ == "__main__":
    main()
