"""`dlq inspect`'s summary prints header values that anyone who can write to the DLQ sets: they
reach the terminal printable and short, and a DLQ full of distinct forged values keeps the summary
bounded (issue 19: dead letters' headers are untrusted). The console's window of a DLQ stays
inside each partition's offsets."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

from stream_orch.reliability import headers as H
from stream_orch.reliability.dlq import MAX_ROWS, OTHER_ROWS, Summary, Window


def dead_letter(reason: str, node: str = "work", topic: str = "events") -> SimpleNamespace:
    headers = [(H.ERROR_REASON, reason), (H.ERROR_NODE, node), (H.ERROR_TOPIC, topic)]
    headers = [(name, text.encode()) for name, text in headers]
    return SimpleNamespace(headers=headers, timestamp=1_767_225_600_000)


def test_header_values_are_printed_without_terminal_escapes_and_cut_short() -> None:
    summary = Summary("events.dlq")
    summary.add(dead_letter("\x1b]0;owned\x07\x1b[2Jinvalid_field", node="n" * 500))
    text = summary.render()
    assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b]0;owned\\x07" in text  # shown, escaped
    assert "n" * 81 not in text and "n" * 80 + "..." in text


def test_distinct_forged_values_keep_the_summary_bounded() -> None:
    summary = Summary("events.dlq")
    for i in range(MAX_ROWS + 500):
        summary.add(dead_letter(f"reason{i}", topic=f"topic{i}"))
    assert len(summary.by_reason) == MAX_ROWS + 1 and len(summary.by_topic) == MAX_ROWS + 1
    assert summary.by_reason[OTHER_ROWS] == 500
    assert summary.records == MAX_ROWS + 500


class _Offsets:
    """A consumer's beginning and end offsets, all a :class:`Window` asks of it."""

    def __init__(self, beginning: dict[int, int], end: dict[int, int]) -> None:
        self._beginning, self._end = beginning, end

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self._beginning[tp.partition] for tp in tps}

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self._end[tp.partition] for tp in tps}


async def test_a_window_shares_its_size_between_the_partitions_and_stays_inside_each() -> None:
    tps = [TopicPartition("t.dlq", p) for p in range(4)]
    consumer: Any = _Offsets({0: 0, 1: 100, 2: 0, 3: 50}, {0: 1_000, 1: 110, 2: 0, 3: 900})
    window = Window(100)  # 25 offsets a partition
    start, until = await window.place(consumer, tps)
    assert [start[tp] for tp in tps] == [975, 100, 0, 875]
    assert [until[tp] for tp in tps] == [1_000, 110, 0, 900]
    assert (window.per_partition, window.older, window.newer) == (25, 975 + 825, 0)
    # before: offsets below the beginning or past the end are held to them
    window = Window(100, {0: 500, 1: 7, 3: 10_000})
    start, until = await window.place(consumer, tps)
    assert [(start[tp], until[tp]) for tp in tps] == [(475, 500), (100, 100), (0, 0), (875, 900)]
    assert (window.older, window.newer) == (475 + 825, 500 + 10)
