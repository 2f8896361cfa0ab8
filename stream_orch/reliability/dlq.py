"""Dead-letter queues: reading them and ``dlq inspect`` (``dlq replay`` is
:mod:`stream_orch.reliability.replay`).

A dead letter keeps the original key and value bytes and carries ``so.error.*`` headers
(:mod:`stream_orch.reliability.headers`). Both commands read the DLQ without a consumer group,
from the beginning up to the end offsets seen at the start, so they never move anyone's offsets
and always finish. The console's DLQ page reads a :class:`Window` of it instead: a bounded
number of offsets, the newest unless it asks for older ones. The headers are as untrusted as
the bytes: anyone who can write to the DLQ can write them.
"""

from __future__ import annotations

import base64
import heapq
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError, UnknownTopicOrPartitionError
from aiokafka.protocol.metadata import MetadataRequest

from stream_orch.errors import UserError
from stream_orch.expressions import compile_expression
from stream_orch.expressions.compiler import ExpressionError
from stream_orch.reliability import headers as H
from stream_orch.settings import Settings
from stream_orch.transport import clients
from stream_orch.transport.connect import start_client, unreachable
from stream_orch.transport.metadata import wait_for_metadata
from stream_orch.transport.reading import read_until_end

# Records per fetch while reading a topic to its end.
READ_BATCH = 2_000
# A summary's rows come from the dead letters' headers, which anyone who can write to the DLQ
# sets: each shown value is cut and made printable (no terminal escapes), and a summary keeps at
# most this many distinct rows per table (the rest are counted under OTHER_ROWS).
SHOWN_CHARS = 80
MAX_ROWS = 50
OTHER_ROWS = "(others)"


# ---------------------------------------------------------------------------- reading


async def read_topic(
    settings: Settings,
    topic: str,
    handle: Callable[[ConsumerRecord[bytes, bytes]], bool | None],
    *,
    missing_ok: bool = False,
    window: Window | None = None,
) -> int:
    """Call ``handle`` for every record of ``topic`` up to its end offsets at the start (of each
    partition's ``window`` only, when given) but the watermark records (engine bookkeeping, no
    dead letters); stop early when ``handle`` returns True. Returns how many records were read."""

    def data(record: ConsumerRecord[bytes, bytes]) -> bool | None:
        return None if H.is_watermark(record.headers) else handle(record)

    consumer = clients.reader(settings.kafka_client_args())
    await start_client(consumer, settings)
    try:
        partitions = await topic_partitions(consumer, topic)
        if not partitions:
            if missing_ok:
                return 0
            raise UserError(f"topic {topic!r} does not exist")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        start, until = await window.place(consumer, tps) if window is not None else (None, None)
        try:
            return await read_until_end(
                consumer,
                tps,
                data,
                idle_timeout_s=settings.request_timeout_s * 3,
                max_records=READ_BATCH,
                start=start,
                until=until,
            )
        except TimeoutError:
            raise unreachable(settings, f"no records from {topic} although the end offsets say so") from None
    finally:
        await consumer.stop()


@dataclass
class Window:
    """At most ``size`` offsets of a topic, shared out evenly between its partitions: in each, the
    newest ones before its offset in ``before`` (default: its end). What a read covered is filled
    in per partition: ``start`` and ``stop`` of the window within ``beginning`` and ``end``. What
    a window reads is bounded whatever the topic holds; its offsets count records, transaction
    markers and watermark records alike (a read_committed reader skips the markers)."""

    size: int
    before: dict[int, int] = field(default_factory=dict)
    beginning: dict[int, int] = field(default_factory=dict)
    start: dict[int, int] = field(default_factory=dict)
    stop: dict[int, int] = field(default_factory=dict)
    end: dict[int, int] = field(default_factory=dict)

    @property
    def per_partition(self) -> int:
        return max(1, self.size // max(1, len(self.end)))

    @property
    def older(self) -> int:
        """Offsets before the window, not read."""
        return sum(self.start[p] - self.beginning[p] for p in self.start)

    @property
    def newer(self) -> int:
        """Offsets after the window (before its end when read), not read."""
        return sum(self.end[p] - self.stop[p] for p in self.stop)

    async def place(
        self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        """The offsets of ``tps`` to read from and to stop before."""
        first = await consumer.beginning_offsets(tps)
        last = await consumer.end_offsets(tps)
        self.beginning = {tp.partition: first[tp] for tp in tps}
        self.end = {tp.partition: last[tp] for tp in tps}
        n = self.per_partition
        for p, end in self.end.items():
            self.stop[p] = min(max(self.before.get(p, end), self.beginning[p]), end)
            self.start[p] = max(self.beginning[p], self.stop[p] - n)
        return (
            {tp: self.start[tp.partition] for tp in tps},
            {tp: self.stop[tp.partition] for tp in tps},
        )


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
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
        _count(self.by_reason, h.get(H.ERROR_REASON, "(no so.error.reason)").split(":", 1)[0])
        _count(self.by_node, h.get(H.ERROR_NODE, "(unknown)"))
        _count(self.by_topic, h.get(H.ERROR_TOPIC, "(unknown)"))
        when = _int(h.get(H.ERROR_LAST_FAILURE)) or record.timestamp
        self.first_ms = when if self.first_ms is None else min(self.first_ms, when)
        self.last_ms = when if self.last_ms is None else max(self.last_ms, when)

    def render(self) -> str:
        if not self.records:
            return f"{self.topic}: no dead letters"
        lines = [
            f"{self.topic}: {self.records} dead letters, failed {iso(self.first_ms)} .. {iso(self.last_ms)}"
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


def printable(text: str) -> str:
    """Untrusted header text as a summary may print it: control characters escaped, cut short."""
    if len(text) > SHOWN_CHARS:
        text = text[:SHOWN_CHARS] + "..."
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _count(counter: Counter[str], value: str) -> None:
    row = printable(value)
    counter[row if row in counter or len(counter) < MAX_ROWS else OTHER_ROWS] += 1


def iso(ms: int | None) -> str:
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


async def inspect(
    settings: Settings, topic: str, *, max_records: int | None = None, show: int | None = None
) -> Summary:
    """The summary of ``topic``'s dead letters (at most ``max_records``), with the first ``show``
    of them as :func:`record_json` in ``shown`` (all without ``show``)."""
    summary = Summary(topic)

    def handle(record: ConsumerRecord[bytes, bytes]) -> bool:
        summary.add(record)
        if show is None or len(summary.shown) < show:
            summary.shown.append(record_json(record))
        return max_records is not None and summary.records >= max_records

    await read_topic(settings, topic, handle)
    return summary


async def inspect_window(settings: Settings, topic: str, window: Window, *, show: int = 0) -> Summary:
    """The summary of the dead letters in ``window`` of ``topic``, with the newest ``show`` of
    them (by timestamp, then partition and offset) as :func:`record_json` in ``shown``, newest
    first. Holds the summary's counts and ``show`` records, whatever the window holds."""
    summary = Summary(topic)
    newest: list[tuple[int, int, int, ConsumerRecord[bytes, bytes]]] = []  # a heap, oldest first

    def handle(record: ConsumerRecord[bytes, bytes]) -> None:
        summary.add(record)
        item = (record.timestamp, record.partition, record.offset, record)
        if len(newest) < show:
            heapq.heappush(newest, item)
        elif show and item[:3] > newest[0][:3]:
            heapq.heapreplace(newest, item)

    await read_topic(settings, topic, handle, window=window)
    summary.shown = [record_json(item[3]) for item in sorted(newest, key=lambda i: i[:3], reverse=True)]
    return summary
