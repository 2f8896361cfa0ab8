"""Helpers for tests that talk to the real broker: unique names, produce and consume with timeouts.

Every call is bounded, so a broken broker fails a test instead of hanging the suite.
Import them as ``from kafka_helpers import produce_json, consume_all`` (``tests/`` is on sys.path).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

DEFAULT_BOOTSTRAP = os.environ.get("STREAM_ORCH_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


def unique_name(prefix: str = "test") -> str:
    """A topic or group name no other test (or earlier run) uses."""
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in prefix)[:120]
    return f"{safe}-{uuid.uuid4().hex[:10]}"


async def create_topic(bootstrap: str, topic: str, partitions: int = 1, timeout: float = 15.0) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    await asyncio.wait_for(admin.start(), timeout)
    try:
        await asyncio.wait_for(
            admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)]), timeout
        )
    finally:
        await admin.close()


async def produce_json(
    bootstrap: str,
    topic: str,
    records: Iterable[Any],
    key_field: str | None = None,
    timeout: float = 30.0,
) -> list[Any]:
    """Produce each record as JSON (keyed by ``key_field`` if given); returns the RecordMetadata list."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=10_000)
    await asyncio.wait_for(producer.start(), timeout)
    try:
        futures = []
        for record in records:
            key = None if key_field is None else str(record[key_field]).encode()
            futures.append(await producer.send(topic, orjson.dumps(record), key=key))
        return list(await asyncio.wait_for(asyncio.gather(*futures), timeout))
    finally:
        await producer.stop()


async def consume_all(
    bootstrap: str,
    topic: str,
    expected: int | None = None,
    timeout: float = 15.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` from the beginning, without a group (nothing is committed).

    Stops at ``expected`` records, or (without ``expected``) at the end offsets seen at the start,
    or after ``timeout`` seconds with whatever arrived: the caller asserts on the count.
    """
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )  # no group: all partitions are assigned and, with nothing committed, read from the start
    await asyncio.wait_for(consumer.start(), timeout)
    out: list[ConsumerRecord[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + timeout
        end: dict[TopicPartition, int] | None = None
        while time.monotonic() < deadline:
            if expected is not None and len(out) >= expected:
                break
            if expected is None and end is None and consumer.assignment():
                end = await consumer.end_offsets(list(consumer.assignment()))
            if end is not None and all([await consumer.position(tp) >= off for tp, off in end.items()]):
                break
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                out.extend(records)
    finally:
        await consumer.stop()
    return out


def json_values(records: Iterable[ConsumerRecord[bytes, bytes]]) -> list[Any]:
    return [orjson.loads(r.value) for r in records if r.value is not None]


def stream_orch_cmd() -> list[str]:
    """The installed console script (the real entry point), else ``python -m``."""
    import shutil
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "stream-orch"
    if script.exists():
        return [str(script)]
    found = shutil.which("stream-orch")
    return [found] if found else [sys.executable, "-m", "stream_orch.cli.main"]


async def run_process(
    cmd: list[str], *, input: bytes | None = None, timeout: float = 60.0, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Run ``cmd``; returns (exit code, stdout, stderr). Killed, and the test failed, on timeout."""
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(input), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"{' '.join(cmd)} did not finish within {timeout}s") from None
    return proc.returncode or 0, out.decode(), err.decode()


async def run_cli(
    *args: str, input: bytes | None = None, timeout: float = 60.0, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Run ``stream-orch ARGS`` in a subprocess; returns (exit code, stdout, stderr)."""
    return await run_process([*stream_orch_cmd(), *args], input=input, timeout=timeout, env=env)


async def consume_committed(
    bootstrap: str, topic: str, timeout: float = 60.0
) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) of every committed record of ``topic`` (read_committed: what consumers of an
    exactly-once producer see), up to the end offsets at the start; fails on timeout."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
        isolation_level="read_committed", max_poll_records=10_000, fetch_max_bytes=32 * 1024 * 1024,
    )  # fmt: skip
    await asyncio.wait_for(consumer.start(), timeout)
    out: list[tuple[bytes | None, bytes | None]] = []
    try:
        deadline = time.monotonic() + timeout
        while not consumer.assignment():
            assert time.monotonic() < deadline, f"no partitions of {topic} assigned"
            await consumer.getmany(timeout_ms=100)
        tps = list(consumer.assignment())
        end = await consumer.end_offsets(tps)  # the last stable offsets under read_committed
        for tp in tps:
            consumer.seek(tp, 0)
        while not all([await consumer.position(tp) >= end[tp] for tp in tps]):
            assert time.monotonic() < deadline, f"{topic}: read {len(out)} records within {timeout}s"
            for records in (await consumer.getmany(timeout_ms=200)).values():
                out.extend((r.key, r.value) for r in records)
    finally:
        await consumer.stop()
    return out
