"""Dead-letter queues: inspect what failed, replay it to where it came from, exactly once.

A dead letter keeps the original key and value bytes and carries ``so.error.*`` headers
(:mod:`stream_orch.reliability.headers`). Both commands read the DLQ without a consumer group,
from the beginning up to the end offsets seen at the start, so they never move anyone's offsets
and always finish.

Replay, and why replaying twice does not publish twice
------------------------------------------------------
Every dead letter has a stable identity: ``<dlq topic>/<partition>/<offset>``. ``replay`` sends it
as the ``so.replay.id`` header and keeps a *ledger* of what it has replayed: a compacted topic
``stream-orch-replay.<dlq topic>`` (``--group G`` names another ledger, ``stream-orch-replay.G``).
A run streams the DLQ in *chunks* (``--chunk-size``, default REPLAY_BATCH): each chunk is one
Kafka transaction of its replayed records **and** the ledger records that mark them as replayed
(runs of offsets per DLQ partition), so a read_committed reader, and the next run's ledger read,
see both or neither. The transactional id is the ledger's name. So:

* a run first initialises that id, which fences a replay of the same ledger still running and
  aborts the open chunk of one that was killed; only then does it read the ledger (committed
  records only) and skip every dead letter in it. A kill -9 at any point leaves each chunk either
  committed (in the ledger, skipped next time) or aborted (invisible, replayed next time):
  nothing twice, nothing lost, as a read_committed consumer of the target sees it;
* memory is bounded by a chunk (futures and offsets) and the clients' buffers, not by the DLQ:
  the ledger is held as one bit per dead letter of the DLQ's current offsets;
* running ``replay`` twice, or with overlapping ``--filter`` expressions, publishes each dead
  letter at most once per ledger (a consumer-group offset could not do that: with a filter,
  the records passed over would be lost to the next run);
* ``--dry-run`` reads the ledger too and shows what would be published, writing nothing;
* ledgers written by earlier versions (one record per id, keyed by the id) are read as well.

A replayed record has the dead letter's key, value bytes and timestamp, the original headers
that are not the engine's (``so.*`` ones are dropped, so lineage and error headers do not pile
up), plus ``so.replay.from`` (``topic/partition/offset`` of the dead letter) and
``so.replay.id``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, ProducerFenced, TopicAlreadyExistsError, UnknownTopicOrPartitionError
from aiokafka.protocol.metadata import MetadataRequest

from stream_orch.errors import UserError
from stream_orch.expressions import compile_expression
from stream_orch.expressions.compiler import ExpressionError
from stream_orch.reliability import headers as H
from stream_orch.reliability.ledger import Replayed, apply_ledger_record, ledger_entries, ledger_topic
from stream_orch.settings import Settings
from stream_orch.transport import clients
from stream_orch.transport.connect import start_client, start_producer, unreachable
from stream_orch.transport.metadata import wait_for_metadata
from stream_orch.transport.reading import read_until_end

# Dead letters per chunk (one transaction with its ledger records): the most a crash leaves to
# redo, and what a run holds at once (futures and offsets; the producer holds the bytes).
REPLAY_BATCH = 2_000
REPLAY_FETCH_BYTES = 1024 * 1024


def replay_id(record: ConsumerRecord[bytes, bytes]) -> str:
    return f"{record.topic}/{record.partition}/{record.offset}"


# ---------------------------------------------------------------------------- reading


async def read_topic(
    settings: Settings,
    topic: str,
    handle: Callable[[ConsumerRecord[bytes, bytes]], bool | None],
    *,
    missing_ok: bool = False,
) -> int:
    """Call ``handle`` for every record of ``topic`` up to its end offsets at the start; stop
    early when ``handle`` returns True. Returns how many records were read."""
    consumer = clients.reader(settings.kafka_client_args())
    await start_client(consumer, settings)
    try:
        partitions = await _partitions(consumer, topic)
        if not partitions:
            if missing_ok:
                return 0
            raise UserError(f"topic {topic!r} does not exist")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        try:
            return await read_until_end(
                consumer, tps, handle, idle_timeout_s=settings.request_timeout_s * 3, max_records=REPLAY_BATCH
            )
        except TimeoutError:
            raise unreachable(settings, f"no records from {topic} although the end offsets say so") from None
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    """The partitions of ``topic``, none when it does not exist. Asks for this topic's metadata
    alone, without creating it: the all-topics listing costs megabytes on a cluster of thousands
    of partitions (10 MB on the dev broker's 2,600 topics), kept by the client while it lives."""
    client = consumer._client  # aiokafka has no public metadata request for one topic
    request = MetadataRequest([topic], allow_auto_topic_creation=False)
    try:
        response = await client.send(client.get_random_node(), request)
    except Exception as exc:  # pragma: no cover - a broker that went away between calls
        raise UserError(f"cannot read the metadata of {topic}: {exc}") from None
    found = [t for t in response.to_object()["topics"] if t["topic"] == topic]
    if not found or found[0]["error_code"] == UnknownTopicOrPartitionError.errno:
        return set()
    try:  # the client's own metadata must list the partitions before they are assigned
        return (await wait_for_metadata(consumer, [topic], timeout_s=5.0))[topic]
    except KafkaError:
        return set()


def decode_value(value: bytes | None) -> tuple[Any, str | None]:
    """(value, encoding): JSON when it parses, else text, else base64 (encoding ``"base64"``)."""
    if value is None:
        return None, None
    try:
        return orjson.loads(value), None
    except orjson.JSONDecodeError:
        pass
    try:
        return value.decode("utf-8"), None
    except UnicodeDecodeError:
        return base64.b64encode(value).decode("ascii"), "base64"


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "replace")


def filter_view(record: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
    """What ``--filter`` expressions see: error fields and the decoded value."""
    h = H.as_dict(record.headers)
    value, _ = decode_value(record.value)
    attempts = h.get(H.ERROR_ATTEMPTS, "")
    return {
        "reason": h.get(H.ERROR_REASON),
        "node": h.get(H.ERROR_NODE),
        "error_class": h.get(H.ERROR_CLASS),
        "topic": h.get(H.ERROR_TOPIC),
        "partition": _int(h.get(H.ERROR_PARTITION)),
        "offset": _int(h.get(H.ERROR_OFFSET)),
        "attempts": _int(attempts),
        "key": _text(record.key),
        "value": value,
    }


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text not in (None, "") else None
    except ValueError:
        return None


def compile_filter(source: str | None) -> Callable[[dict[str, Any]], bool] | None:
    if source is None:
        return None
    try:
        fn = compile_expression(source).fn
    except ExpressionError as exc:
        raise UserError(f"--filter: {exc.message} (at column {exc.offset + 1})") from None

    def matches(view: dict[str, Any]) -> bool:
        try:
            return bool(fn(view))
        except Exception:  # a record the expression cannot evaluate does not match
            return False

    return matches


# ---------------------------------------------------------------------------- inspect


@dataclass
class Summary:
    topic: str
    records: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    by_node: Counter[str] = field(default_factory=Counter)
    by_topic: Counter[str] = field(default_factory=Counter)
    first_ms: int | None = None
    last_ms: int | None = None
    shown: list[dict[str, Any]] = field(default_factory=list)

    def add(self, record: ConsumerRecord[bytes, bytes]) -> None:
        h = H.as_dict(record.headers)
        self.records += 1
        self.by_reason[h.get(H.ERROR_REASON, "(no so.error.reason)").split(":", 1)[0]] += 1
        self.by_node[h.get(H.ERROR_NODE, "(unknown)")] += 1
        self.by_topic[h.get(H.ERROR_TOPIC, "(unknown)")] += 1
        when = _int(h.get(H.ERROR_LAST_FAILURE)) or record.timestamp
        self.first_ms = when if self.first_ms is None else min(self.first_ms, when)
        self.last_ms = when if self.last_ms is None else max(self.last_ms, when)

    def render(self) -> str:
        if not self.records:
            return f"{self.topic}: no dead letters"
        lines = [
            f"{self.topic}: {self.records} dead letters, failed {_iso(self.first_ms)} .. {_iso(self.last_ms)}"
        ]
        for title, counter in (
            ("by reason", self.by_reason),
            ("by node", self.by_node),
            ("by original topic", self.by_topic),
        ):
            lines.append(f"{title}:")
            width = max(len(k) for k in counter)
            lines += [f"  {k:<{width}}  {n}" for k, n in counter.most_common()]
        return "\n".join(lines)


def _iso(ms: int | None) -> str:
    if ms is None:
        return "?"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def record_json(record: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
    """A dead letter as a JSON-ready dict (headers as text, value decoded when possible)."""
    value, encoding = decode_value(record.value)
    out: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": _text(record.key),
        "headers": {k: _text(v) for k, v in record.headers},
        "value": value,
    }
    if encoding:
        out["value_encoding"] = encoding
    return out


async def inspect(settings: Settings, topic: str, *, max_records: int | None = None) -> Summary:
    summary = Summary(topic)

    def handle(record: ConsumerRecord[bytes, bytes]) -> bool:
        summary.add(record)
        summary.shown.append(record_json(record))
        return max_records is not None and summary.records >= max_records

    await read_topic(settings, topic, handle)
    return summary


# ---------------------------------------------------------------------------- replay


@dataclass
class ReplayResult:
    read: int = 0
    published: int = 0
    already: int = 0
    filtered: int = 0
    no_target: int = 0
    chunks: int = 0
    by_target: Counter[str] = field(default_factory=Counter)
    ledger: str = ""

    def render(self, dry_run: bool) -> str:
        verb = "would publish" if dry_run else "published"
        targets = ", ".join(f"{t}: {n}" for t, n in sorted(self.by_target.items())) or "-"
        chunks = "" if dry_run else f" in {self.chunks} transaction{'' if self.chunks == 1 else 's'}"
        return (
            f"{self.read} dead letters read; {verb} {self.published} ({targets}){chunks}; "
            f"{self.already} already replayed (ledger {self.ledger}); {self.filtered} not matching the filter"
            + (f"; {self.no_target} without so.error.topic (skipped)" if self.no_target else "")
        )


def replay_headers(record: ConsumerRecord[bytes, bytes]) -> list[tuple[str, bytes]]:
    return [
        *H.user_headers(list(record.headers)),
        (H.REPLAYED_FROM, replay_id(record).encode()),
        (H.REPLAY_ID, replay_id(record).encode()),
    ]


async def read_ledger(settings: Settings, ledger: str, dlq: str, done: Replayed) -> None:
    """Everything ``ledger`` says about ``dlq``, into ``done`` (read_committed: an aborted
    chunk's ledger records do not count, as its published records do not)."""
    await read_topic(
        settings, ledger, lambda r: apply_ledger_record(dlq, done, r.key, r.value), missing_ok=True
    )


async def _ensure_ledger(settings: Settings, ledger: str) -> None:
    admin = AIOKafkaAdminClient(**settings.kafka_client_args())
    await start_client(admin, settings)  # type: ignore[type-var]
    try:
        await admin.create_topics([NewTopic(ledger, 1, 1, topic_configs={"cleanup.policy": "compact"})])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


class _Chunk:
    """One transaction of replayed records and the ledger records that mark them as replayed:
    read_committed readers see both or neither. Holds futures and offsets, not the records (the
    producer has their bytes until they are sent)."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        dlq: str,
        ledger: str,
        result: ReplayResult,
        emit: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        self._producer = producer
        self._dlq = dlq
        self._ledger = ledger
        self._result = result
        self._emit = emit
        self._sent: list[tuple[str, int, int, asyncio.Future[Any]]] = []

    def __len__(self) -> int:
        return len(self._sent)

    async def add(self, target: str, record: ConsumerRecord[bytes, bytes]) -> None:
        if not self._sent:
            await self._producer.begin_transaction()
        future = await self._producer.send(
            target,
            value=record.value,
            key=record.key,
            headers=replay_headers(record),
            timestamp_ms=record.timestamp,
        )
        self._sent.append((target, record.partition, record.offset, future))

    async def commit(self) -> None:
        if not self._sent:
            return
        sent, self._sent = self._sent, []
        try:
            metas = await asyncio.gather(*(future for *_, future in sent))
            offsets: dict[int, list[int]] = {}
            for _target, partition, offset, _future in sent:
                offsets.setdefault(partition, []).append(offset)
            ledger_futures = [
                await self._producer.send(self._ledger, key=key, value=value)
                for partition in sorted(offsets)
                for key, value in ledger_entries(self._dlq, partition, offsets[partition])
            ]
            await asyncio.gather(*ledger_futures)
            await self._producer.commit_transaction()
        except BaseException:
            with contextlib.suppress(Exception):  # fenced or broken: the next run's init aborts it
                await asyncio.wait_for(self._producer.abort_transaction(), 5.0)
            raise
        self._result.chunks += 1
        for (target, partition, offset, _future), meta in zip(sent, metas, strict=True):
            self._result.published += 1
            self._result.by_target[target] += 1
            if self._emit:
                rid = f"{self._dlq}/{partition}/{offset}"
                self._emit({"to": target, "partition": meta.partition, "offset": meta.offset, "id": rid})


async def replay(
    settings: Settings,
    topic: str,
    *,
    to: str = "original",
    filter_expr: str | None = None,
    dry_run: bool = False,
    group: str | None = None,
    emit: Callable[[dict[str, Any]], None] | None = None,
    chunk_size: int | None = None,
) -> ReplayResult:
    """Publish the dead letters of ``topic`` (matching ``filter_expr``) that this ledger has not
    replayed yet, streaming them in transactions of ``chunk_size`` (default REPLAY_BATCH); see
    the module docstring for the guarantee."""
    size = chunk_size or REPLAY_BATCH
    matches = compile_filter(filter_expr)
    ledger = ledger_topic(topic, group)
    result = ReplayResult(ledger=ledger)
    producer: AIOKafkaProducer | None = None
    if not dry_run:
        # Initialising the ledger's transactional id fences a replay of the same ledger that is
        # still running and aborts the open chunk of one that was killed; after it, the ledger's
        # committed records are all there is.
        producer = await start_producer(settings, transactional_id=ledger, linger_ms=5)
    try:
        # One fetch response of at most 1 MiB, 256 KiB per partition (a record batch larger than
        # that still comes whole): what the reader buffers does not grow with the DLQ's partitions.
        consumer = clients.reader(
            settings.kafka_client_args(),
            fetch_max_bytes=REPLAY_FETCH_BYTES,
            max_partition_fetch_bytes=REPLAY_FETCH_BYTES // 4,
        )
        await start_client(consumer, settings)
        try:
            partitions = await _partitions(consumer, topic)
            if not partitions:
                raise UserError(f"topic {topic!r} does not exist")
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            start = await consumer.beginning_offsets(tps)
            end = await consumer.end_offsets(tps)
            done = Replayed({tp.partition: (start[tp], end[tp]) for tp in tps})
            if producer is not None:
                await _ensure_ledger(settings, ledger)
            await read_ledger(settings, ledger, topic, done)
            chunk = None if producer is None else _Chunk(producer, topic, ledger, result, emit)

            async def handle(record: ConsumerRecord[bytes, bytes]) -> None:
                result.read += 1
                if (record.partition, record.offset) in done:
                    result.already += 1
                    return
                if matches is not None and not matches(filter_view(record)):
                    result.filtered += 1
                    return
                target = to
                if to == "original":
                    target = H.as_dict(record.headers).get(H.ERROR_TOPIC, "")
                    if not target:
                        result.no_target += 1
                        return
                if chunk is None:  # --dry-run
                    result.published += 1
                    result.by_target[target] += 1
                    if emit:
                        emit({"to": target, **record_json(record)})
                    return
                await chunk.add(target, record)
                if len(chunk) >= size:
                    await chunk.commit()

            try:
                await _stream(consumer, tps, end, handle, settings.request_timeout_s * 3, min(size, 5_000))
            except TimeoutError:
                raise unreachable(
                    settings, f"no records from {topic} although the end offsets say so"
                ) from None
            if chunk is not None:
                await chunk.commit()  # the last, partial chunk
        finally:
            await consumer.stop()
    except ProducerFenced:
        raise UserError(
            f"another `dlq replay` of ledger {ledger} started and fenced this one; "
            f"the {result.published} records this run committed stay replayed"
        ) from None
    finally:
        if producer is not None:
            await producer.stop()
    return result


async def _stream(
    consumer: AIOKafkaConsumer,
    tps: list[TopicPartition],
    end: dict[TopicPartition, int],
    handle: Callable[[ConsumerRecord[bytes, bytes]], Awaitable[None]],
    idle_timeout_s: float,
    max_records: int,
) -> None:
    """Await ``handle`` for every record of the assigned ``tps`` from the beginning up to ``end``,
    one fetch at a time: nothing is fetched while ``handle`` (a chunk's commit) is busy, so what
    is held is a fetch, never the topic."""
    await consumer.seek_to_beginning(*tps)
    position = {tp: await consumer.position(tp) for tp in tps}
    remaining = {tp for tp in tps if position[tp] < end[tp]}
    loop = asyncio.get_running_loop()
    idle_deadline = loop.time() + idle_timeout_s
    while remaining:
        batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=max_records)
        if batches:
            idle_deadline = loop.time() + idle_timeout_s
        elif loop.time() > idle_deadline:
            raise TimeoutError
        for tp, records in batches.items():
            for record in records:
                if record.offset >= end[tp]:
                    break
                await handle(record)
            if records:
                position[tp] = records[-1].offset + 1
        for tp in list(remaining):
            if position[tp] < end[tp]:  # also past gaps (compaction, transaction markers) at the end
                position[tp] = await consumer.position(tp)
            if position[tp] >= end[tp]:
                remaining.discard(tp)
