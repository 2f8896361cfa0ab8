"""`dlq replay --to original` writes only to the DLQ's own origin topics, on the real broker: a
dead letter whose forged ``so.error.topic`` names another topic is skipped and counted, never
written there; the genuine ones are replayed once; the replay says where it writes before the
summary; the DLQ and every other topic stay as they were."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from kafka_helpers import run_cli, unique_name
from ruamel.yaml import YAML

from tests.integration.test_dlq_replay_chunks import (
    high_watermarks,
    make_topics,
    produce_dead_letters,
    replay_ids,
)

pytestmark = pytest.mark.integration


async def delete_topics(bootstrap: str, *topics: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(list(topics))
    finally:
        await admin.close()


async def test_a_forged_origin_is_skipped_and_the_genuine_dead_letters_are_replayed(
    kafka_bootstrap: str,
) -> None:
    """DLQ ``<input>.dlq`` without --topology: the input is the only origin."""
    source = unique_name("replay-dest.in")
    dlq_topic, victim = f"{source}.dlq", unique_name("replay-dest.victim")
    ledger = unique_name("replay-dest")
    await make_topics(kafka_bootstrap, (source, 3), (dlq_topic, 3), (victim, 1))
    try:
        await produce_dead_letters(kafka_bootstrap, dlq_topic, source, 5, pad=10)  # genuine
        await produce_dead_letters(kafka_bootstrap, dlq_topic, victim, 1, pad=10)  # forged header
        env = {**os.environ, "STREAM_ORCH_BOOTSTRAP_SERVERS": kafka_bootstrap}
        args = ["dlq", "replay", dlq_topic, "--group", ledger]

        code, stdout, stderr = await run_cli(*args, env=env)

        assert code == 0, stderr
        lines = stdout.splitlines()
        assert lines[:2] == [
            f"replaying 5 dead letters of {dlq_topic} to {source}",
            f"skipping 1 dead letters of {dlq_topic} whose so.error.topic is not one of {source}: "
            f"{victim} (1)",
        ], stdout
        assert "published 5 " in lines[-1] and "1 from a topic that is not the DLQ's origin" in lines[-1], (
            stdout
        )
        assert await high_watermarks(kafka_bootstrap, victim, "read_uncommitted") == 0  # not even aborted
        replayed = await replay_ids(kafka_bootstrap, source)
        assert len(replayed) == 5 and set(replayed.values()) == {1}
        assert await high_watermarks(kafka_bootstrap, dlq_topic) == 6  # the DLQ as it was

        code, stdout, stderr = await run_cli(*args, env=env)  # again: the forged one is still refused
        assert code == 0, stderr
        assert "published 0 " in stdout and "5 already replayed" in stdout and "skipping 1 " in stdout, stdout
        assert await high_watermarks(kafka_bootstrap, victim, "read_uncommitted") == 0
    finally:
        await delete_topics(kafka_bootstrap, source, dlq_topic, victim, f"stream-orch-replay.{ledger}")


async def test_with_the_topology_only_its_input_and_retry_topics_are_origins(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A DLQ with its own name (``errors.dlq``), given the topology: dead letters go back to the
    node's input and retry topic; one naming the node's output topic is skipped, not written."""
    suffix = unique_name("rd")
    source, out, dlq_topic = f"in.{suffix}", f"out.{suffix}", f"failed.{suffix}"
    retry = f"{source}.retry.1"
    ledger = unique_name("replay-dest")
    doc = {
        "topology": "replay_destinations",
        "topics": {source: {"partitions": 2}, out: {"partitions": 2}},
        "nodes": {
            "work": {
                "input": source,
                "routes": [{"to": out}],
                "errors": {"retry": {"delays": ["1s"]}, "dlq": dlq_topic},
            }
        },
    }
    topology = tmp_path / "replay_destinations.yaml"
    with topology.open("w") as fh:
        YAML().dump(doc, fh)
    await make_topics(kafka_bootstrap, (source, 2), (out, 2), (retry, 2), (dlq_topic, 2))
    try:
        await produce_dead_letters(kafka_bootstrap, dlq_topic, source, 3, pad=10)
        await produce_dead_letters(kafka_bootstrap, dlq_topic, retry, 1, pad=10)
        await produce_dead_letters(kafka_bootstrap, dlq_topic, out, 2, pad=10)  # forged: an output
        env = {**os.environ, "STREAM_ORCH_BOOTSTRAP_SERVERS": kafka_bootstrap}
        args = ["dlq", "replay", dlq_topic, "--topology", str(topology), "--group", ledger]

        code, stdout, stderr = await run_cli(*args, env=env)

        assert code == 0, stderr
        assert stdout.splitlines()[:3] == [
            f"replaying 3 dead letters of {dlq_topic} to {source}",
            f"replaying 1 dead letters of {dlq_topic} to {retry}",
            f"skipping 2 dead letters of {dlq_topic} whose so.error.topic is not one of {source}, {retry}: "
            f"{out} (2)",
        ], stdout
        assert sum((await replay_ids(kafka_bootstrap, source)).values()) == 3
        assert sum((await replay_ids(kafka_bootstrap, retry)).values()) == 1
        assert await high_watermarks(kafka_bootstrap, out, "read_uncommitted") == 0
    finally:
        await delete_topics(kafka_bootstrap, source, out, retry, dlq_topic, f"stream-orch-replay.{ledger}")
