"""`dlq inspect`'s summary prints header values that anyone who can write to the DLQ sets: they
reach the terminal printable and short, and a DLQ full of distinct forged values keeps the summary
bounded (issue 19: dead letters' headers are untrusted)."""

from __future__ import annotations

from types import SimpleNamespace

from stream_orch.reliability import headers as H
from stream_orch.reliability.dlq import MAX_ROWS, OTHER_ROWS, Summary


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
