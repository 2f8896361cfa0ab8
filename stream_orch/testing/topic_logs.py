"""The test driver's topics, in memory: per partition a list of records with their offsets, one
sequence number across every topic (the order things happened, which ``read`` and
``records`` keep), when each partition last got a record (for punctuation), and the tables a
topic feeds, updated as its records land (as a worker's feed consumers would)."""

from __future__ import annotations

import itertools
from typing import Any

from stream_orch.state.topic_rows import TopicRows
from stream_orch.steps.source_watermarks import is_watermark_record
from stream_orch.testing.records import Stored
from stream_orch.transport.records import decode_headers

#: (key, value, timestamp or None for "now", headers: a list, or encoded as the router hands
#: over lineage headers: transport/records.py)
Pending = tuple[bytes | None, bytes | None, int | None, list[tuple[str, bytes]] | bytes]


def by_seq(record: Stored) -> int:
    return record.seq


class TopicLogs:
    def __init__(self, topology: str, counts: dict[str, int], feeds: dict[str, list[TopicRows]]) -> None:
        self.topology = topology
        self._logs: dict[str, list[list[Stored]]] = {t: [[] for _ in range(n)] for t, n in counts.items()}
        self._feeds = feeds
        self._seq = itertools.count()
        self.last_at: dict[tuple[str, int], int] = {}  # (topic, partition) -> clock at its last record

    def counts(self) -> dict[str, int]:
        return {t: len(logs) for t, logs in self._logs.items()}

    def partitions(self, topic: str) -> list[list[Stored]]:
        """The partitions of ``topic``; a topic the topology does not have is a KeyError naming
        the ones it has."""
        logs = self._logs.get(topic)
        if logs is None:
            known = ", ".join(sorted(self._logs))
            raise KeyError(f"topic {topic!r} is not in topology {self.topology} (topics: {known})")
        return logs

    def append(self, topic: str, partition: int, records: list[Pending], now: int) -> None:
        """``records`` at the end of a topic partition, each with the next offset; a topic that
        feeds tables updates them."""
        log = self.partitions(topic)[partition]
        self.last_at[(topic, partition)] = now
        seq, offset = self._seq, len(log)
        log.extend(
            [
                Stored(
                    topic,
                    partition,
                    offset + i,
                    key,
                    value,
                    now if ts is None else ts,
                    decode_headers(headers) if headers.__class__ is bytes else headers,
                    next(seq),
                )
                for i, (key, value, ts, headers) in enumerate(records)
            ]
        )
        feeds = self._feeds.get(topic)
        if feeds:
            for table in feeds:
                for key, value, _ts, _headers in records:
                    table.apply(key, value)

    def stored(self, topic: str, after: int = -1) -> list[Stored]:
        """The records of ``topic`` with a sequence number after ``after``, in that order, without
        watermark records (no value, read by window steps only: stream_orch.steps.source_watermarks)."""
        records: list[Any] = [
            r
            for log in self.partitions(topic)
            for r in log
            if r.seq > after and not (r.value is None and is_watermark_record(r.headers))
        ]
        records.sort(key=by_seq)
        return records
