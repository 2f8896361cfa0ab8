"""One file into its topic, chunk by chunk, each chunk one Kafka transaction with its ledger
record (:mod:`.ledger`).

The transactional id is stable per (topic, file content): starting the producer fences an
ingest of the same file still running and aborts the open chunk of one that was killed; only
then is the ledger read (read_committed), so what it says is what the topic holds. The run
resumes after the last committed row; rows before it are read and validated again (not
published) so the rejects file is rebuilt for the whole file, the same as an uninterrupted run
would have written. A file whose ledger says ``done`` is not read at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, ProducerFenced, UnknownTopicOrPartitionError

from stream_orch.codecs import Codec, EncodeError, JsonCodec
from stream_orch.errors import UserError
from stream_orch.reliability.dlq import read_topic
from stream_orch.settings import Settings
from stream_orch.tools.ingest import ledger as L
from stream_orch.tools.ingest.coerce import RowConformer, RowRejected
from stream_orch.tools.ingest.ledger import Progress
from stream_orch.tools.ingest.progress import FileBar
from stream_orch.tools.ingest.readers import BadRow, Reader
from stream_orch.tools.ingest.rejects import Rejects
from stream_orch.tools.produce import BATCH_BYTES, BatchSender, encode_key
from stream_orch.transport.connect import start_producer
from stream_orch.transport.topics import ensure_compacted_topic

# Rows per transaction. 20,000 rather than 5,000: on the 1 M-row benchmark 5,000 cost ~15 % more
# CPU (200 transactions, each a few requests and their bookkeeping) and more waiting; two chunks
# in memory are ~4 MB, and a crash makes a re-run re-read (never re-publish) at most one chunk.
DEFAULT_CHUNK = 20_000
YIELD_ROWS = 256  # ~2 ms of work between two looks at the event loop


@dataclass(frozen=True)
class Target:
    """Where and how every file of one command goes."""

    topic: str
    format: str
    conformer: RowConformer
    codec: Codec
    key_field: str | None = None
    chunk: int = DEFAULT_CHUNK
    quiet: bool = False
    encode: Callable[[dict[str, Any]], bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        encode = self.codec.encode
        if isinstance(self.codec, JsonCodec):
            # The conformer let through finite numbers only, which is all the codec's walk over
            # a value holding null checks: orjson alone (a fifth of the CPU of a row with a null).
            encode = orjson.dumps
        object.__setattr__(self, "encode", encode)


@dataclass
class FileResult:
    path: Path
    digest: str = ""
    rows: int = 0
    published: int = 0  # by this run
    rejected: int = 0
    chunks: int = 0
    resumed_after: int = 0
    already_done: bool = False
    seconds: float = 0.0

    def summary(self, rejects: Path | None) -> str:
        if self.already_done:
            return f"{self.path}: already ingested (ledger {self.digest[:12]}), nothing published"
        rate = self.published / self.seconds if self.seconds > 0 else 0.0
        plural = "" if self.chunks == 1 else "s"
        text = f"{self.path}: {self.published} rows published in {self.chunks} transaction{plural}"
        if self.resumed_after:
            text += f" (resumed after row {self.resumed_after})"
        text += f", {self.rejected} rejected"
        if self.rejected and rejects is not None:
            text += f" (see {rejects})"
        return text + f", {self.seconds:.1f}s, {rate:,.0f} rows/s"


Row = dict[str, Any] | list[str] | BadRow


def row_maker(target: Target, header: list[str] | None = None) -> Callable[[Row], tuple[bytes | None, bytes]]:
    """``make(row) -> (key, value)`` for one file (a CSV row: its cells under ``header``, the
    reader's list, filled in when it meets the header row), or RowRejected with the reason.
    A closure: what it needs is looked up once per file, not once per row."""
    conformer = target.conformer
    conform, convert = conformer.conform, None
    key_field, encode, columns = target.key_field, target.encode, header if header is not None else []

    def make(record: Row) -> tuple[bytes | None, bytes]:
        nonlocal convert
        if record.__class__ is list:
            if convert is None:  # the header is read by now
                convert = conformer.converter(columns)
            value = convert(record)  # type: ignore[arg-type]
        elif record.__class__ is dict:
            value = conform(record)  # type: ignore[arg-type]
        else:
            raise RowRejected(record.reason)  # type: ignore[union-attr]
        try:
            if key_field is None:
                return None, encode(value)
            key = value.get(key_field)
            if key is None:
                raise RowRejected(f"field {key_field!r}: no value for the key (--key-field)")
            return encode_key(key), encode(value)
        except (EncodeError, orjson.JSONEncodeError) as exc:
            raise RowRejected(f"cannot be encoded: {exc}") from None
        except UnicodeEncodeError:  # the reader keeps invalid bytes as surrogates: not writable
            raise RowRejected("not valid UTF-8") from None

    return make


def make_row(target: Target, record: Row, header: list[str] | None = None) -> tuple[bytes | None, bytes]:
    """(key, value) of one row; see :func:`row_maker`."""
    return row_maker(target, header)(record)


async def read_progress(settings: Settings, ledger: str, digest: str) -> Progress | None:
    found: list[Progress | None] = [None]
    key = digest.encode()

    def handle(record: Any) -> None:
        if record.key == key:
            found[0] = L.decode_progress(record.value)

    await read_topic(settings, ledger, handle, missing_ok=True)
    return found[0]


class _Chunks:
    """The open transaction: rows go to a :class:`BatchSender`; :meth:`commit` flushes them,
    adds the ledger record and commits (or aborts and raises)."""

    def __init__(self, producer: AIOKafkaProducer, sender: BatchSender, ledger: str, digest: str) -> None:
        self.producer = producer
        self.sender = sender
        self.ledger = ledger
        self.digest = digest
        self.open = False
        self.rows = 0

    async def add(self, records: list[tuple[bytes | None, bytes]]) -> None:
        if not self.open:
            await self.producer.begin_transaction()
            self.open = True
        await self.sender.add_many(records)
        self.rows += len(records)

    async def commit(self, progress: Progress) -> None:
        if not self.open:
            await self.producer.begin_transaction()
            self.open = True
        try:
            failed = self.sender.report.failed
            report = await self.sender.finish()
            if report.failed > failed:
                raise KafkaError(report.errors[-1] if report.errors else "records were not acknowledged")
            key, value = progress.encode(self.digest)
            await (await self.producer.send(self.ledger, key=key, value=value))
            await self.producer.commit_transaction()
        except BaseException:
            with contextlib.suppress(Exception):  # fenced or broken: the next run's start aborts it
                await asyncio.wait_for(self.producer.abort_transaction(), 5.0)
            raise
        finally:
            self.open = False
        self.rows = 0


async def ingest_file(settings: Settings, target: Target, path: Path, rejects: Rejects) -> FileResult:
    """Publish every good row of ``path`` not yet in the topic; see the module's docstring."""
    result = FileResult(path)
    started = time.monotonic()
    result.digest = await asyncio.to_thread(L.file_digest, path)
    ledger = L.ledger_topic(target.topic)
    await ensure_compacted_topic(settings, ledger)
    producer = await start_producer(
        settings, transactional_id=L.transactional_id(target.topic, result.digest),
        max_batch_size=BATCH_BYTES, linger_ms=5,
    )  # fmt: skip
    chunks: _Chunks | None = None
    try:
        try:
            partitions = sorted(
                await asyncio.wait_for(producer.partitions_for(target.topic), settings.request_timeout_s)
            )
        except (UnknownTopicOrPartitionError, TimeoutError):
            raise UserError(f"topic {target.topic!r} does not exist and was not auto-created") from None
        done = await read_progress(settings, ledger, result.digest) or Progress()
        if done.done:
            result.already_done = True
            return result
        result.resumed_after = done.rows
        chunks = _Chunks(producer, BatchSender(producer, target.topic, partitions), ledger, result.digest)
        rejects.start(path)  # a file that is read gets its rejects written anew
        try:
            await _stream(target, path, rejects, chunks, done, result)
        finally:
            rejects.close_for(path)
    except ProducerFenced:
        raise UserError(
            f"another ingest of {path} into {target.topic} started and fenced this one; "
            "what this run committed stays published"
        ) from None
    finally:
        if chunks is not None and chunks.open:  # interrupted mid-chunk: its rows never show
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.abort_transaction(), 5.0)
        await producer.stop()
        result.seconds = time.monotonic() - started
    return result


@dataclass
class _Prepared:
    """The good rows of one chunk, encoded, and the ledger record that commits them."""

    records: list[tuple[bytes | None, bytes]]
    progress: Progress


def _prepare(
    target: Target, reader: Reader, rejects: Rejects, done: Progress, result: FileResult
) -> Iterator[_Prepared | None]:
    """The file's chunks: rows read, validated and encoded; rejects written as they are met;
    the rows up to ``done.rows`` (committed by an earlier run) validated but not returned.
    None every YIELD_ROWS rows: a moment for the event loop (the commit in flight)."""
    path = reader.path
    records: list[tuple[bytes | None, bytes]] = []
    published = done.published
    rows = line = 0
    make = row_maker(target, reader.header)
    skip, chunk = done.rows, target.chunk
    for line, record in reader.rows():
        rows += 1
        if not rows % YIELD_ROWS:
            yield None
        try:
            key_value = make(record)
        except RowRejected as exc:
            result.rejected += 1
            rejects.add(path, line, str(exc))
            continue
        if rows > skip:
            records.append(key_value)
            if len(records) >= chunk:
                published += len(records)
                yield _Prepared(records, Progress(rows, line, published, result.rejected, False, path.name))
                records = []
    published += len(records)
    result.rows = rows
    yield _Prepared(records, Progress(rows, line, published, result.rejected, True, path.name))


async def _stream(
    target: Target, path: Path, rejects: Rejects, chunks: _Chunks, done: Progress, result: FileResult
) -> None:
    """Chunk after chunk: the next chunk is read and validated while the previous one's
    transaction commits (a commit waits ~0.1 s for the broker: 20 s over 200 chunks if nothing
    overlapped it). One thread: the reading gives the event loop a moment every YIELD_ROWS
    rows (a reading thread was slower: the two threads fought over the GIL)."""
    reader = Reader(path, target.format)
    bar = FileBar(path, disabled=target.quiet)
    committing: asyncio.Task[None] | None = None
    try:
        for prepared in _prepare(target, reader, rejects, done, result):
            if prepared is None:
                if committing is not None:
                    await asyncio.sleep(0)
                continue
            if committing is not None:
                await committing
                committing = None
            await chunks.add(prepared.records)
            result.published += len(prepared.records)
            result.chunks += 1
            committing = asyncio.create_task(chunks.commit(prepared.progress))
            bar.update(reader.position, result.published, result.rejected)
        if committing is not None:
            await committing
    finally:
        if committing is not None and not committing.done():
            committing.cancel()
            with contextlib.suppress(BaseException):
                await committing
        bar.close(reader.position, result.published, result.rejected)
