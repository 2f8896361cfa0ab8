"""``dlq replay``: dead letters back to where they came from, each at most once per ledger.

Where a replay writes
---------------------
``--to original`` sends a dead letter to the topic its ``so.error.topic`` header names only when
that topic is one of the DLQ's origins (:mod:`stream_orch.reliability.destinations`): the header
is as untrusted as the record, and a forged one must not make a replay write anywhere else. Dead
letters naming another topic are skipped and counted. ``--to TOPIC`` sends every one to TOPIC.
A run reads the DLQ twice: first to count what goes where, which it says before it writes (one
line per target topic, and one for the skipped), then to publish.

Why replaying twice does not publish twice
------------------------------------------
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
* ``--dry-run`` reads the ledger too and shows what would be published, writing nothing (the
  first pass alone);
* ledgers written by earlier versions (one record per id, keyed by the id) are read as well.

A replayed record has the dead letter's key, value bytes and timestamp, the original headers
that are not the engine's (``so.*`` ones are dropped, so lineage and error headers do not pile
up), plus ``so.replay.from`` (``topic/partition/offset`` of the dead letter) and
``so.replay.id``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import ProducerFenced

from stream_orch.errors import UserError
from stream_orch.reliability import headers as H
from stream_orch.reliability.destinations import count_refused, name_origins, plan_lines
from stream_orch.reliability.dlq import compile_filter, filter_view, read_topic, record_json, topic_partitions
from stream_orch.reliability.ledger import Replayed, apply_ledger_record, ledger_entries, ledger_topic
from stream_orch.settings import Settings
from stream_orch.transport import clients
from stream_orch.transport.connect import start_client, start_producer, unreachable
from stream_orch.transport.topics import ensure_compacted_topic

# Dead letters per chunk (one transaction with its ledger records): the most a crash leaves to
# redo, and what a run holds at once (futures and offsets; the producer holds the bytes).
REPLAY_BATCH = 2_000
REPLAY_FETCH_BYTES = 1024 * 1024


def replay_id(record: ConsumerRecord[bytes, bytes]) -> str:
    return f"{record.topic}/{record.partition}/{record.offset}"


@dataclass
class ReplayResult:
    read: int = 0
    published: int = 0
    already: int = 0
    filtered: int = 0
    no_target: int = 0
    chunks: int = 0
    by_target: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)  # origin (as shown) -> skipped
    ledger: str = ""

    def render(self, dry_run: bool) -> str:
        verb = "would publish" if dry_run else "published"
        targets = ", ".join(f"{t}: {n}" for t, n in sorted(self.by_target.items())) or "-"
        chunks = "" if dry_run else f" in {self.chunks} transaction{'' if self.chunks == 1 else 's'}"
        return (
            f"{self.read} dead letters read; {verb} {self.published} ({targets}){chunks}; "
            f"{self.already} already replayed (ledger {self.ledger}); {self.filtered} not matching the filter"
            + (f"; {self.no_target} without so.error.topic (skipped)" if self.no_target else "")
            + (
                f"; {sum(self.refused.values())} from a topic that is not the DLQ's origin (skipped)"
                if self.refused
                else ""
            )
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
    origins: Collection[str] | None = None,
    filter_expr: str | None = None,
    dry_run: bool = False,
    group: str | None = None,
    emit: Callable[[dict[str, Any]], None] | None = None,
    announce: Callable[[str], None] | None = None,
    chunk_size: int | None = None,
) -> ReplayResult:
    """Publish the dead letters of ``topic`` (matching ``filter_expr``) that this ledger has not
    replayed yet, streaming them in transactions of ``chunk_size`` (default REPLAY_BATCH); see
    the module docstring for the guarantee. With ``to="original"`` a dead letter goes back only
    to one of ``origins`` (default: from the DLQ's name, :func:`name_origins`). ``announce`` gets
    the plan's lines (where to, how many) before anything is written."""
    size = chunk_size or REPLAY_BATCH
    matches = compile_filter(filter_expr)
    allowed: frozenset[str] | None = None
    if to == "original":
        allowed = (name_origins(topic) if origins is None else frozenset(origins)) - {topic}
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
            partitions = await topic_partitions(consumer, topic)
            if not partitions:
                raise UserError(f"topic {topic!r} does not exist")
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            start = await consumer.beginning_offsets(tps)
            end = await consumer.end_offsets(tps)
            done = Replayed({tp.partition: (start[tp], end[tp]) for tp in tps})
            if producer is not None:
                await ensure_compacted_topic(settings, ledger)
            await read_ledger(settings, ledger, topic, done)

            def target_of(record: ConsumerRecord[bytes, bytes], counts: ReplayResult) -> str | None:
                """Where ``record`` goes; None when it is skipped (counted in ``counts``, by why;
                watermark records, engine bookkeeping, are no dead letters and not counted)."""
                if H.is_watermark(record.headers):
                    return None
                counts.read += 1
                if (record.partition, record.offset) in done:
                    counts.already += 1
                    return None
                if matches is not None and not matches(filter_view(record)):
                    counts.filtered += 1
                    return None
                if allowed is None:
                    return to
                origin = H.as_dict(record.headers).get(H.ERROR_TOPIC, "")
                if not origin:
                    counts.no_target += 1
                    return None
                if origin not in allowed:
                    count_refused(counts.refused, origin)
                    return None
                return origin

            async def stream(handle: Callable[[ConsumerRecord[bytes, bytes]], Awaitable[None]]) -> None:
                try:
                    await _stream(
                        consumer, tps, end, handle, settings.request_timeout_s * 3, min(size, 5_000)
                    )
                except TimeoutError:
                    raise unreachable(
                        settings, f"no records from {topic} although the end offsets say so"
                    ) from None

            plan = ReplayResult(ledger=ledger)

            async def count(record: ConsumerRecord[bytes, bytes]) -> None:
                target = target_of(record, plan)
                if target is not None:
                    plan.published += 1
                    plan.by_target[target] += 1
                    if emit and dry_run:
                        emit({"to": target, **record_json(record)})

            await stream(count)  # first pass: what goes where, said before anything is written
            for line in plan_lines(topic, plan.by_target, plan.refused, allowed, dry_run):
                if announce:
                    announce(line)
            if producer is None or not plan.published:
                return plan
            chunk = _Chunk(producer, topic, ledger, result, emit)

            async def publish(record: ConsumerRecord[bytes, bytes]) -> None:
                target = target_of(record, result)
                if target is not None:
                    await chunk.add(target, record)
                    if len(chunk) >= size:
                        await chunk.commit()

            await stream(publish)
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
