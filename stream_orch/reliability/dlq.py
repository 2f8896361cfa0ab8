"""Dead-letter queues: inspect what failed, replay it to where it came from, exactly once.

A dead letter keeps the original key and value bytes and carries ``so.error.*`` headers
(:mod:`stream_orch.reliability.headers`). Both commands read the DLQ without a consumer group,
from the beginning up to the end offsets seen at the start, so they never move anyone's offsets
and always finish.

Replay, and why replaying twice does not publish twice
------------------------------------------------------
Every dead letter has a stable identity: ``<dlq topic>/<partition>/<offset>``. ``replay`` sends it
as the ``so.replay.id`` header and keeps a *ledger* of the ids it has replayed: a compacted
topic ``stream-orch-replay.<dlq topic>`` (``--group G`` names another ledger,
``stream-orch-replay.G``), one record per replayed id, keyed by the id. A run first reads the
whole ledger, then skips every dead letter already in it. The ledger is written only after the
broker acknowledged the replayed records (an idempotent producer with ``acks=all``, so retries
inside one run cannot duplicate them either), batch by batch. So:

* running ``replay`` twice, or with overlapping ``--filter`` expressions, publishes each dead
  letter at most once per ledger (a consumer-group offset could not do that: with a filter,
  the records passed over would be lost to the next run);
* ``--dry-run`` reads the ledger too and shows what would be published, writing nothing;
* the one window left is a crash between the acknowledgement of a replayed batch and the ledger
  write: the next run publishes that batch again, with the same ``so.replay.id``, which a
  consumer (or a ``dedupe`` step on ``so.replay.id``-carrying records) can use to drop them.

A replayed record has the dead letter's key, value bytes and timestamp, the original headers
that are not the engine's (``so.*`` ones are dropped, so lineage and error headers do not pile
up), plus ``so.replay.from`` (``topic/partition/offset`` of the dead letter) and
``so.replay.id``.
"""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from stream_orch.errors import UserError
from stream_orch.expressions import compile_expression
from stream_orch.expressions.compiler import ExpressionError
from stream_orch.reliability import headers as H
from stream_orch.settings import Settings
from stream_orch.tools.kafka_clients import start_client, start_producer, unreachable
from stream_orch.transport import clients
from stream_orch.transport.metadata import wait_for_metadata
from stream_orch.transport.reading import read_until_end

LEDGER_PREFIX = "stream-orch-replay."
REPLAY_BATCH = 500


def ledger_topic(dlq: str, group: str | None = None) -> str:
    return f"{LEDGER_PREFIX}{group or dlq}"


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
    try:
        topics = await consumer.topics()
    except Exception as exc:  # pragma: no cover - a broker that went away between calls
        raise UserError(f"cannot list topics: {exc}") from None
    if topic not in topics:
        return set()
    try:  # the all-topics listing does not fill the client's metadata
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
    by_target: Counter[str] = field(default_factory=Counter)
    ledger: str = ""

    def render(self, dry_run: bool) -> str:
        verb = "would publish" if dry_run else "published"
        targets = ", ".join(f"{t}: {n}" for t, n in sorted(self.by_target.items())) or "-"
        return (
            f"{self.read} dead letters read; {verb} {self.published} ({targets}); "
            f"{self.already} already replayed (ledger {self.ledger}); {self.filtered} not matching the filter"
            + (f"; {self.no_target} without so.error.topic (skipped)" if self.no_target else "")
        )


def replay_headers(record: ConsumerRecord[bytes, bytes]) -> list[tuple[str, bytes]]:
    return [
        *H.user_headers(list(record.headers)),
        (H.REPLAYED_FROM, replay_id(record).encode()),
        (H.REPLAY_ID, replay_id(record).encode()),
    ]


async def read_ledger(settings: Settings, ledger: str) -> set[str]:
    done: set[str] = set()

    def handle(record: ConsumerRecord[bytes, bytes]) -> None:
        if record.key is not None:
            if record.value is None:
                done.discard(record.key.decode())
            else:
                done.add(record.key.decode())

    await read_topic(settings, ledger, handle, missing_ok=True)
    return done


async def _ensure_ledger(settings: Settings, ledger: str) -> None:
    admin = AIOKafkaAdminClient(**settings.kafka_client_args())
    await start_client(admin, settings)  # type: ignore[type-var]
    try:
        await admin.create_topics([NewTopic(ledger, 1, 1, topic_configs={"cleanup.policy": "compact"})])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


async def replay(
    settings: Settings,
    topic: str,
    *,
    to: str = "original",
    filter_expr: str | None = None,
    dry_run: bool = False,
    group: str | None = None,
    emit: Callable[[dict[str, Any]], None] | None = None,
) -> ReplayResult:
    """Publish the dead letters of ``topic`` (matching ``filter_expr``) that this ledger has not
    replayed yet; see the module docstring for the guarantee."""
    matches = compile_filter(filter_expr)
    ledger = ledger_topic(topic, group)
    result = ReplayResult(ledger=ledger)
    done = await read_ledger(settings, ledger)
    chosen: list[tuple[str, ConsumerRecord[bytes, bytes]]] = []

    def handle(record: ConsumerRecord[bytes, bytes]) -> None:
        result.read += 1
        rid = replay_id(record)
        if rid in done:
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
        chosen.append((target, record))

    await read_topic(settings, topic, handle)
    if dry_run:
        for target, record in chosen:
            result.published += 1
            result.by_target[target] += 1
            if emit:
                emit({"to": target, **record_json(record)})
        return result
    if not chosen:
        return result
    await _ensure_ledger(settings, ledger)
    producer = await start_producer(settings, linger_ms=5)
    try:
        for start in range(0, len(chosen), REPLAY_BATCH):
            batch = chosen[start : start + REPLAY_BATCH]
            futures = [
                await producer.send(
                    target,
                    value=record.value,
                    key=record.key,
                    headers=replay_headers(record),
                    timestamp_ms=record.timestamp,
                )
                for target, record in batch
            ]
            metas = await asyncio.gather(*futures)  # acknowledged by every in-sync replica
            ledger_futures = [
                await producer.send(
                    ledger,
                    key=replay_id(record).encode(),
                    value=orjson.dumps(
                        {"to": meta.topic, "partition": meta.partition, "offset": meta.offset}
                        | {"at": H.now_ms()}
                    ),
                )
                for (_target, record), meta in zip(batch, metas, strict=True)
            ]
            await asyncio.gather(*ledger_futures)
            for (target, record), meta in zip(batch, metas, strict=True):
                result.published += 1
                result.by_target[target] += 1
                if emit:
                    emit(
                        {"to": target, "partition": meta.partition, "offset": meta.offset}
                        | {"id": replay_id(record)}
                    )
    finally:
        await producer.stop()
    return result
