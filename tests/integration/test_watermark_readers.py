"""Watermark records (no value, ``so.wm.only``: what a node writes to a topic a window of its
topology reads) are engine bookkeeping, not data: on the real broker, through the real CLI,
``tail`` leaves them out (``--watermarks`` shows them, marked), ``dlq inspect`` counts no dead
letter for them and ``dlq replay`` neither replays nor counts them."""

from __future__ import annotations

import os

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from kafka_helpers import run_cli, unique_name

from stream_orch.reliability import headers as H
from stream_orch.steps import source_watermarks as sw
from tests.integration.test_dlq_replay_chunks import make_topics, produce_dead_letters, replay_ids
from tests.integration.test_dlq_replay_destinations import delete_topics

pytestmark = pytest.mark.integration

PARTITIONS = 2


async def produce_watermarks(bootstrap: str, topic: str, marks: list[int]) -> int:
    """One watermark record per partition of ``topic`` for each of ``marks``, as a routing node
    writes them at the end of a batch (the same header helpers); returns how many."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition in range(PARTITIONS):  # send() refuses a record without key and value
            batch = producer.create_batch()
            for source, mark in enumerate(marks):
                headers = [sw.header("rekey", source, mark), (H.WATERMARK_ONLY, b"")]
                assert batch.append(key=None, value=None, timestamp=None, headers=headers) is not None
            await (await producer.send_batch(batch, topic, partition=partition))
        return len(marks) * PARTITIONS
    finally:
        await producer.stop()


def json_lines(text: str) -> list[dict]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


async def test_tail_leaves_watermark_records_out_and_shows_them_on_request(kafka_bootstrap: str) -> None:
    topic = unique_name("wm-readers.tail")
    await make_topics(kafka_bootstrap, (topic, PARTITIONS))
    try:
        data = [{"hub": f"h{i}", "n": i} for i in range(5)]
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for record in data[:3]:
                await (await producer.send(topic, orjson.dumps(record), key=record["hub"].encode()))
        finally:
            await producer.stop()
        marks = await produce_watermarks(kafka_bootstrap, topic, [1_000, 2_000])
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for record in data[3:]:
                await (await producer.send(topic, orjson.dumps(record), key=record["hub"].encode()))
        finally:
            await producer.stop()
        base = ["--bootstrap-servers", kafka_bootstrap, "tail", topic, "--from-beginning"]

        code, out, err = await run_cli(*base, "--timeout", "4")
        assert code == 0, err
        shown = json_lines(out)
        assert sorted(r["value"]["n"] for r in shown) == [r["n"] for r in data], out
        assert all(r["value"] is not None and "watermark" not in r for r in shown), out

        code, out, err = await run_cli(*base, "--max", "5", "--timeout", "10")  # --max counts data only
        assert code == 0, err
        assert len(json_lines(out)) == 5 and all(r["value"] is not None for r in json_lines(out)), out

        code, out, err = await run_cli(*base, "--timeout", "4", "--watermarks")
        assert code == 0, err
        shown = json_lines(out)
        wm = [r for r in shown if r.get("watermark")]
        assert len(shown) == len(data) + marks and len(wm) == marks, out
        assert all(r["value"] is None and H.WATERMARK_ONLY in r["headers"] for r in wm), out
        assert sorted(r["headers"][H.WATERMARK] for r in wm) == sorted(
            f"rekey/{s}/{m}" for s, m in enumerate([1_000, 2_000]) for _ in range(PARTITIONS)
        )
        assert not any("watermark" in r for r in shown if r["value"] is not None)
    finally:
        await delete_topics(kafka_bootstrap, topic)


async def test_dlq_inspect_and_replay_pass_over_watermark_records(kafka_bootstrap: str) -> None:
    source = unique_name("wm-readers.in")
    dlq_topic = f"{source}.dlq"
    ledger = unique_name("wm-readers")
    await make_topics(kafka_bootstrap, (source, 1), (dlq_topic, PARTITIONS))
    try:
        await produce_dead_letters(kafka_bootstrap, dlq_topic, source, 3, pad=10)
        await produce_watermarks(kafka_bootstrap, dlq_topic, [5_000])
        await produce_dead_letters(kafka_bootstrap, dlq_topic, source, 2, pad=10)
        env = {**os.environ, "STREAM_ORCH_BOOTSTRAP_SERVERS": kafka_bootstrap}

        code, out, err = await run_cli("dlq", "inspect", dlq_topic, "--records", env=env)
        assert code == 0, err
        assert f"{dlq_topic}: 5 dead letters" in err, err
        assert len(json_lines(out)) == 5, out

        code, out, err = await run_cli("dlq", "replay", dlq_topic, "--group", ledger, env=env)
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0] == f"replaying 5 dead letters of {dlq_topic} to {source}", out
        assert "published 5 " in lines[-1] and "skipping" not in out and "no so.error.topic" not in out, out
        replayed = await replay_ids(kafka_bootstrap, source)
        assert len(replayed) == 5 and set(replayed.values()) == {1}
    finally:
        await delete_topics(kafka_bootstrap, source, dlq_topic, f"stream-orch-replay.{ledger}")
