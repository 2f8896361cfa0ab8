"""``stream-orch audit``: the audit topic read back, from a time on, as a table or JSON lines."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC

import orjson
from aiokafka import ConsumerRecord, TopicPartition
from pydantic import ValidationError

from stream_orch.audit.events import AuditEvent
from stream_orch.reliability.dlq import topic_partitions
from stream_orch.settings import Settings
from stream_orch.transport import clients
from stream_orch.transport.connect import start_client
from stream_orch.transport.reading import read_until_end

COLUMNS = ("time", "action", "topology", "version", "hash", "user@host", "pid", "details")


@dataclass
class AuditRead:
    events: list[AuditEvent] = field(default_factory=list)
    unreadable: int = 0  # records on the topic that are not audit events (written by something else)
    topic_exists: bool = True


async def read_events(
    settings: Settings,
    *,
    since_ms: int | None = None,
    topology: str | None = None,
    action: str | None = None,
) -> AuditRead:
    """The events of the audit topic written at ``since_ms`` or later (all without it), of
    ``topology`` and ``action`` when given, oldest first. Each partition is read from the
    offset its broker finds for ``since_ms`` (offsets_for_times) to its end."""
    result = AuditRead()
    topic = settings.audit_topic
    consumer = await start_client(clients.reader(settings.kafka_client_args()), settings)
    try:
        partitions = await topic_partitions(consumer, topic)
        if not partitions:
            result.topic_exists = False
            return result
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        start: dict[TopicPartition, int] = {}
        if since_ms is not None:
            found = await consumer.offsets_for_times({tp: since_ms for tp in tps})
            end = await consumer.end_offsets(tps)
            start = {tp: (found[tp].offset if found.get(tp) else end[tp]) for tp in tps}

        def keep(record: ConsumerRecord[bytes, bytes]) -> None:
            try:
                event = AuditEvent.from_json(record.value or b"")
            except (ValidationError, orjson.JSONDecodeError):
                result.unreadable += 1
                return
            if topology is not None and event.topology != topology:
                return
            if action is not None and event.action != action:
                return
            if since_ms is not None and event.time.timestamp() * 1000 < since_ms:
                return  # the broker's timestamp and the event's own may differ by the send time
            result.events.append(event)

        await read_until_end(consumer, tps, keep, timeout_s=settings.request_timeout_s * 6, start=start)
    finally:
        await consumer.stop()
    result.events.sort(key=lambda e: e.time)
    return result


def _details(details: dict[str, object]) -> str:
    return " ".join(
        f"{k}={v if isinstance(v, str) else orjson.dumps(v).decode()}" for k, v in details.items()
    )


def table_rows(events: Iterable[AuditEvent]) -> list[tuple[str, ...]]:
    return [
        (
            e.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            e.action,
            e.topology or "-",
            e.version or "-",
            e.content_hash or "-",
            f"{e.user}@{e.host}",
            str(e.pid),
            _details(e.details),
        )
        for e in events
    ]


def render_table(events: list[AuditEvent]) -> str:
    """A header and one line per event, columns padded to their widest cell (the last, details,
    is not padded)."""
    rows = [COLUMNS, *table_rows(events)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    lines = [
        "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]]).rstrip()
        for row in rows
    ]
    return "\n".join(lines)


def render_json_lines(events: Iterable[AuditEvent]) -> str:
    return "".join(e.to_json().decode() + "\n" for e in events)
