"""produce → tail round trips through the real CLI against the real broker."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from aiokafka.partitioner import murmur2
from kafka_helpers import consume_all, create_topic, json_values, produce_json, run_cli

pytestmark = pytest.mark.integration


async def test_produce_then_tail_round_trip(kafka_bootstrap: str, unique_topic: str, tmp_path: Path) -> None:
    records = [{"id": f"acct-{i}", "amount": i * 1.5, "note": "ü"} for i in range(50)]
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))

    code, out, err = await run_cli(
        "--bootstrap-servers",
        kafka_bootstrap,
        "produce",
        unique_topic,
        "--file",
        str(src),
        "--key-field",
        "id",
    )
    assert code == 0, err
    assert "50 records acknowledged, 0 failed" in out

    code, out, err = await run_cli(
        "--bootstrap-servers", kafka_bootstrap, "tail", unique_topic, "--from-beginning", "--max", "50",
        "--timeout", "20",
    )  # fmt: skip
    assert code == 0, err
    lines = [orjson.loads(line) for line in out.splitlines()]
    assert [line["value"] for line in lines] == records
    assert [line["key"] for line in lines] == [r["id"] for r in records]
    assert [line["offset"] for line in lines] == list(range(50))
    first = lines[0]
    assert set(first) == {"topic", "key", "partition", "offset", "timestamp", "headers", "value"}
    assert first["topic"] == unique_topic and first["headers"] == {}
    assert abs(first["timestamp"] - time.time() * 1000) < 120_000


async def test_bad_lines_are_reported_and_the_good_ones_produced(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    src = tmp_path / "mixed.jsonl"
    src.write_text('{"id": "a"}\n{oops\n\n{"id": "b"}\n{"other": 1}\n')
    code, out, err = await run_cli(
        "--bootstrap-servers", kafka_bootstrap, "produce", unique_topic, "-f", str(src), "--key-field", "id"
    )
    assert code == 1
    assert "2 records acknowledged, 0 failed, 2 lines rejected" in out
    assert f"{src}:2: not valid JSON" in err
    assert f"{src}:5: --key-field id: the record has no 'id'" in err
    assert "Traceback" not in err
    assert json_values(await consume_all(kafka_bootstrap, unique_topic, expected=2)) == [
        {"id": "a"},
        {"id": "b"},
    ]


async def test_stdin_and_rate_limit(kafka_bootstrap: str, unique_topic: str) -> None:
    data = b"".join(orjson.dumps({"n": i}) + b"\n" for i in range(20))
    started = time.monotonic()
    code, out, err = await run_cli(
        "--bootstrap-servers", kafka_bootstrap, "produce", unique_topic, "--rate", "20", input=data
    )
    elapsed = time.monotonic() - started
    assert code == 0, err
    assert "20 records acknowledged" in out
    assert elapsed >= 0.9, f"20 records at 20/s took only {elapsed:.2f}s"
    assert json_values(await consume_all(kafka_bootstrap, unique_topic, expected=20)) == [
        {"n": i} for i in range(20)
    ]


async def test_keys_are_partitioned_like_the_java_client(kafka_bootstrap: str, unique_topic: str) -> None:
    """Kafka's default partitioner: murmur2(key) mod partitions, so co-partitioned topics line up."""
    await create_topic(kafka_bootstrap, unique_topic, partitions=6)
    keys = [f"customer-{i}" for i in range(40)]
    data = b"".join(orjson.dumps({"k": k}) + b"\n" for k in keys)
    code, _, err = await run_cli(
        "--bootstrap-servers", kafka_bootstrap, "produce", unique_topic, "--key-field", "k", input=data
    )
    assert code == 0, err
    records = await consume_all(kafka_bootstrap, unique_topic, expected=40)
    assert len(records) == 40
    for record in records:
        assert record.partition == (murmur2(record.key) & 0x7FFFFFFF) % 6
    assert len({r.partition for r in records}) > 1


def _tail_from_beginning(bootstrap: str, topic: str) -> tuple[str, ...]:
    return ("--bootstrap-servers", bootstrap, "tail", topic, "--from-beginning", "--timeout", "3")


async def test_tail_with_group_commits_and_resumes(kafka_bootstrap: str, unique_topic: str) -> None:
    await produce_json(kafka_bootstrap, unique_topic, [{"n": i} for i in range(5)])
    group = f"{unique_topic}-g"
    args = _tail_from_beginning(kafka_bootstrap, unique_topic)
    code, out, _ = await run_cli(*args, "--group", group, "--max", "3")
    assert code == 0 and [orjson.loads(x)["value"]["n"] for x in out.splitlines()] == [0, 1, 2]
    code, out, _ = await run_cli(*args, "--group", group)
    assert [orjson.loads(x)["value"]["n"] for x in out.splitlines()] == [3, 4]
    # without a group nothing was committed: it starts from the beginning again
    code, out, _ = await run_cli(*args)
    assert len(out.splitlines()) == 5


async def test_tail_timeout_ends_an_idle_tail(kafka_bootstrap: str, unique_topic: str) -> None:
    await produce_json(kafka_bootstrap, unique_topic, [{"x": 1}])
    started = time.monotonic()
    code, out, err = await run_cli(
        "--bootstrap-servers", kafka_bootstrap, "tail", unique_topic, "--from-beginning", "--timeout", "2"
    )
    assert code == 0, err
    assert len(out.splitlines()) == 1
    assert time.monotonic() - started < 20


@pytest.mark.parametrize("command", [["produce", "t"], ["tail", "t", "--timeout", "1"]])
async def test_wrong_bootstrap_fails_fast_with_one_line(command: list[str]) -> None:
    started = time.monotonic()
    code, _, err = await run_cli(
        "--bootstrap-servers", "127.0.0.1:1", *command, input=b'{"a": 1}\n', timeout=30
    )
    assert time.monotonic() - started < 15
    assert code != 0
    assert err.strip().count("\n") == 0, err
    assert "cannot reach Kafka at 127.0.0.1:1" in err and "Traceback" not in err


async def test_tail_reads_committed_unless_asked_for_uncommitted(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    from aiokafka import AIOKafkaProducer
    from kafka_helpers import unique_name

    await create_topic(kafka_bootstrap, unique_topic)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=unique_name("tail-txn"))
    await producer.start()
    try:
        await producer.begin_transaction()
        await producer.send_and_wait(unique_topic, b'{"n": "aborted"}')
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send_and_wait(unique_topic, b'{"n": "committed"}')
    finally:
        await producer.stop()

    def values(out: str) -> list[str]:
        return [orjson.loads(line)["value"]["n"] for line in out.splitlines()]

    args = _tail_from_beginning(kafka_bootstrap, unique_topic)
    code, out, err = await run_cli(*args)
    assert code == 0, err
    assert values(out) == ["committed"]
    code, out, err = await run_cli(*args, "--isolation", "read_uncommitted")
    assert code == 0, err
    assert values(out) == ["aborted", "committed"]


async def test_tail_of_a_missing_topic_is_one_line_and_creates_nothing(kafka_bootstrap: str) -> None:
    from kafka_helpers import unique_name

    from stream_orch.runtime.admin import partition_counts

    topic = unique_name("missing")
    code, out, err = await run_cli("tail", topic, "--timeout", "2")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        f"stream-orch: error: topic '{topic}' does not exist (tail does not create topics)"
    ]
    assert await partition_counts({"bootstrap_servers": kafka_bootstrap}, [topic]) == {}
