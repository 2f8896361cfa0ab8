"""Contender: a bare per-event Faust agent doing the same forwarding.

Run as ``faust -A benchmarks.contenders.faust_agent worker -l warn --without-web``. Raw
serializers and orjson keep the per-record work equal to the aiokafka contenders, so what
is measured is Faust's stream layer (an Event object, awaits and an ack per record).
"""

from __future__ import annotations

import faust

from benchmarks import env
from benchmarks.contenders._aiokafka_common import transform

app = faust.App(
    env.get(env.GROUP, "bench-faust"),
    broker=f"kafka://{env.bootstrap()}",
    store="memory://",
    web_enabled=False,
    datadir=env.get(env.STATE_DIR, "/tmp/bench-faust"),
    topic_partitions=6,
    topic_replication_factor=1,
    consumer_auto_offset_reset="earliest",
    key_serializer="raw",
    value_serializer="raw",
)
source = app.topic(env.get(env.INPUT, "bench-in"), key_type=bytes, value_type=bytes)
sink = app.topic(env.get(env.OUTPUT, "bench-out"), key_type=bytes, value_type=bytes)


@app.agent(source)
async def forward(stream: faust.StreamT) -> None:
    async for event in stream.events():
        await sink.send(key=event.key, value=transform(event.value))
