"""``stream-orch tail``: records of a topic as JSON lines, for people and for ``jq``.

Values are shown as JSON when they parse as JSON, else as text, else as base64 (flagged with
``"value_encoding": "base64"``), so any topic can be inspected without knowing its format.
"""

from __future__ import annotations

import asyncio
import base64
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from stream_orch.errors import UserError
from stream_orch.reliability.headers import is_watermark
from stream_orch.settings import Settings
from stream_orch.transport.connect import start_consumer


def _text_or_base64(data: bytes) -> tuple[str, bool]:
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), True


def record_to_json(record: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
    """One record as a JSON-ready dict: topic, key, partition, offset, timestamp, headers, value."""
    out: dict[str, Any] = {"topic": record.topic}
    if record.key is None:
        out["key"] = None
    else:
        out["key"], key_b64 = _text_or_base64(record.key)
        if key_b64:
            out["key_encoding"] = "base64"
    out |= {"partition": record.partition, "offset": record.offset, "timestamp": record.timestamp}
    headers: dict[str, str] = {}
    for name, raw in record.headers:
        text, is_b64 = _text_or_base64(raw or b"")
        headers[name] = f"base64:{text}" if is_b64 else text
    out["headers"] = headers
    value = record.value
    if value is None:
        out["value"] = None
    else:
        try:
            out["value"] = orjson.loads(value)
        except orjson.JSONDecodeError:
            out["value"], value_b64 = _text_or_base64(value)
            if value_b64:
                out["value_encoding"] = "base64"
    return out


async def tail(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool = False,
    max_records: int | None = None,
    group: str | None = None,
    idle_timeout_s: float | None = None,
    isolation: str = "read_committed",
    emit: Callable[[dict[str, Any]], None] | None = None,
    watermarks: bool = False,
) -> int:
    """Emit records until ``max_records`` or ``idle_timeout_s`` without records; returns the count.

    Watermark records (engine bookkeeping a node writes to a topic a window reads, no value) are
    passed over, or with ``watermarks`` shown with ``"watermark": true`` (not as tombstones).

    Without ``group`` nothing is committed, so tailing never moves anyone's offsets.
    ``read_uncommitted`` also shows records of open and aborted transactions (exactly_once).
    """
    emit = emit or _print_json
    consumer = await start_consumer(
        settings,
        group_id=group,
        auto_offset_reset="earliest" if from_beginning else "latest",
        isolation_level=isolation,
    )
    seen = 0
    try:
        # subscribing to a missing topic makes a broker with auto.create.topics.enable create it
        # with its default partition count, and a worker then refuses to start against it
        if topic not in await consumer.topics():
            raise UserError(f"topic {topic!r} does not exist (tail does not create topics)")
        consumer.subscribe([topic])
        if from_beginning and group is None:
            await _seek_to_beginning(consumer, settings.request_timeout_s)
        last_record = time.monotonic()
        while max_records is None or seen < max_records:
            wait_s = 1.0
            if idle_timeout_s is not None:
                wait_s = max(0.0, min(wait_s, last_record + idle_timeout_s - time.monotonic()))
                if wait_s == 0.0:
                    break
            limit = None if max_records is None else max_records - seen
            batches = await consumer.getmany(timeout_ms=int(wait_s * 1000), max_records=limit)
            records = [r for rs in batches.values() for r in rs]  # each partition in offset order
            shown = 0
            for record in records:
                if is_watermark(record.headers):
                    if not watermarks:
                        continue
                    emit(record_to_json(record) | {"watermark": True})
                else:
                    emit(record_to_json(record))
                shown += 1
            if shown:
                seen += shown
                last_record = time.monotonic()
                _flush()
            if records and group is not None:
                await consumer.commit()
    finally:
        await consumer.stop()
    return seen


async def _seek_to_beginning(consumer: AIOKafkaConsumer, timeout_s: float) -> None:
    """Wait for the (group-less) assignment, then rewind it; new partitions start at earliest anyway."""
    deadline = time.monotonic() + timeout_s
    while not consumer.assignment() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if consumer.assignment():
        await consumer.seek_to_beginning()


def _print_json(obj: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj) + b"\n")


def _flush() -> None:
    sys.stdout.flush()
