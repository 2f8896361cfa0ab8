"""``stream-orch produce``: JSON lines from a file or stdin into a topic, fast and keyed.

Records go out in per-partition batches (``create_batch``/``send_batch``), so throughput is
bounded by the broker, not by per-record futures. Keys are hashed with Kafka's murmur2
partitioner, so records keyed here land where a Java producer would put them.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, UnknownTopicOrPartitionError

from stream_orch.errors import UserError
from stream_orch.runtime.output import PartitionMap
from stream_orch.settings import Settings
from stream_orch.tools.progress import ProgressBar
from stream_orch.transport.connect import start_producer

BATCH_BYTES = 512 * 1024
MAX_REPORTED_REJECTS = 20

#: Returns None when the record is acceptable, else why not (e.g. a schema validator).
Validator = Callable[[Any], str | None]


class LineRejected(ValueError):
    """A line that is not produced; the message is printed as ``file:line: message``."""


@dataclass
class ProduceReport:
    acknowledged: int = 0
    failed: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.acknowledged} records acknowledged, {self.failed} failed"
        if self.rejected:
            text += f", {self.rejected} lines rejected"
        return text

    @property
    def ok(self) -> bool:
        return not (self.failed or self.rejected)


def encode_key(value: Any) -> bytes:
    """Strings as their UTF-8 bytes (what other clients send); anything else as compact JSON."""
    return value.encode() if isinstance(value, str) else orjson.dumps(value)


def parse_line(line: bytes, key_field: str | None, validate: Validator | None) -> tuple[bytes | None, bytes]:
    """(key, value) of one JSON line; the value is the line itself, already valid JSON."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise LineRejected(f"not valid JSON: {exc}") from None
    key = None
    if key_field is not None:
        if not isinstance(record, dict):
            raise LineRejected(f"--key-field {key_field}: the line is not a JSON object")
        if record.get(key_field) is None:
            raise LineRejected(f"--key-field {key_field}: the record has no {key_field!r}")
        key = encode_key(record[key_field])
    if validate is not None and (problem := validate(record)):
        raise LineRejected(problem)
    return key, line


class BatchSender:
    """Fills one batch per partition and hands it to the producer when full or flushed."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, partitions: list[int]) -> None:
        self.producer = producer
        self.topic = topic
        self.partitions = partitions
        self._round_robin = itertools.cycle(partitions)
        self._sticky = next(self._round_robin)
        self._builders: dict[int, Any] = {}
        self._inflight: list[tuple[asyncio.Future[Any], int]] = []
        self._keyed = PartitionMap({topic: len(partitions)})  # the runtime's murmur2 and cache
        self.report = ProduceReport()

    def _partition(self, key: bytes | None) -> int:
        if key is None:  # sticky for keyless records: whole batches, one partition after another
            return self._sticky
        return self.partitions[self._keyed.of(self.topic, key)]

    async def add(self, key: bytes | None, value: bytes) -> None:
        part = self._partition(key)
        builder = self._builders.get(part)
        if builder is None:
            builder = self._builders[part] = self.producer.create_batch()
        if builder.append(key=key, value=value, timestamp=None) is None:
            await self._send(part)
            builder = self._builders[part] = self.producer.create_batch()
            if builder.append(key=key, value=value, timestamp=None) is None:
                self.report.failed += 1
                self.report.errors.append(f"a record of {len(value)} bytes exceeds the maximum batch size")

    async def add_many(self, records: Iterable[tuple[bytes | None, bytes]]) -> None:
        """:meth:`add` for many records: a plain loop that awaits only when a batch is full
        (a coroutine call per record was a sixth of ``ingest``'s time per row)."""
        builders = self._builders
        for key, value in records:
            part = self._sticky if key is None else self.partitions[self._keyed.of(self.topic, key)]
            builder = builders.get(part)
            if builder is None or builder.append(key=key, value=value, timestamp=None) is None:
                await self.add(key, value)  # a new batch, or the full one sent first

    async def _send(self, part: int) -> None:
        builder = self._builders.pop(part, None)
        if builder is None or builder.record_count() == 0:
            return
        count = builder.record_count()
        try:
            future = await self.producer.send_batch(builder, self.topic, partition=part)
        except KafkaError as exc:
            self._fail(count, exc)
            return
        self._inflight.append((future, count))
        if part == self._sticky:
            self._sticky = next(self._round_robin)
        await self._collect(block=False)

    async def flush(self) -> None:
        for part in list(self._builders):
            await self._send(part)

    async def finish(self) -> ProduceReport:
        await self.flush()
        await self._collect(block=True)
        return self.report

    async def _collect(self, block: bool) -> None:
        pending = []
        for future, count in self._inflight:
            if not (block or future.done()):
                pending.append((future, count))
                continue
            try:
                await future
                self.report.acknowledged += count
            except KafkaError as exc:
                self._fail(count, exc)
        self._inflight = pending

    def _fail(self, count: int, exc: BaseException) -> None:
        self.report.failed += count
        if len(self.report.errors) < 5:
            self.report.errors.append(f"{type(exc).__name__}: {exc}".strip())


async def _chunks(stream: BinaryIO, size: int = 1 << 16) -> AsyncIterator[bytes]:
    """Whatever input is available (``read1``), so piped input is sent without waiting for EOF."""
    read = getattr(stream, "read1", stream.read)
    while chunk := await asyncio.to_thread(read, size):
        yield chunk


async def produce_stream(
    settings: Settings,
    topic: str,
    stream: BinaryIO,
    *,
    source: str = "-",
    key_field: str | None = None,
    rate: float | None = None,
    validate: Validator | None = None,
    total_bytes: int | None = None,
    on_reject: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
) -> ProduceReport:
    """Produce every good line of ``stream``; bad lines are reported as ``source:line: why``."""
    producer = await start_producer(settings, max_batch_size=BATCH_BYTES, linger_ms=5)
    try:
        try:
            partitions = sorted(
                await asyncio.wait_for(producer.partitions_for(topic), settings.request_timeout_s)
            )
        except (UnknownTopicOrPartitionError, TimeoutError):
            raise UserError(f"topic {topic!r} does not exist and was not auto-created") from None
        sender = BatchSender(producer, topic, partitions)
        await _pump(stream, sender, source, key_field, rate, validate, total_bytes, on_reject)
        return await sender.finish()
    finally:
        await producer.stop()


async def _pump(
    stream: BinaryIO,
    sender: BatchSender,
    source: str,
    key_field: str | None,
    rate: float | None,
    validate: Validator | None,
    total_bytes: int | None,
    on_reject: Callable[[str], None],
) -> None:
    report = sender.report
    bar = ProgressBar.for_input(total_bytes)
    lineno = produced = read_bytes = 0
    rest = b""
    started = last_flush = time.monotonic()

    async def one(line: bytes) -> None:
        nonlocal lineno, produced, last_flush
        lineno += 1
        line = line.strip()
        if not line:
            return
        try:
            key, value = parse_line(line, key_field, validate)
        except LineRejected as exc:
            report.rejected += 1
            if report.rejected <= MAX_REPORTED_REJECTS:
                on_reject(f"{source}:{lineno}: {exc}")
            return
        if rate:
            ahead = started + produced / rate - time.monotonic()
            if ahead > 0.005:
                await sender.flush()  # what is due goes out before we wait
                last_flush = time.monotonic()
                await asyncio.sleep(ahead)
        await sender.add(key, value)
        produced += 1

    async for chunk in _chunks(stream):
        read_bytes += len(chunk)
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            await one(line)
        if len(chunk) < (1 << 16) or time.monotonic() - last_flush > 0.2:
            await sender.flush()  # input is idle or slow: do not hold records back
            last_flush = time.monotonic()
        if bar:
            bar.update(read_bytes, produced)
    if rest:
        await one(rest)
    if bar:
        bar.close(read_bytes, produced)
    if report.rejected > MAX_REPORTED_REJECTS:
        on_reject(f"{source}: ... and {report.rejected - MAX_REPORTED_REJECTS} more rejected lines")
