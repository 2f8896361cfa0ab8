"""JSON and text log lines carry node/topic/partition/offset when given."""

from __future__ import annotations

import io
import json
import logging

import pytest

from stream_orch.observability.logging import RepeatFilter, setup_logging


@pytest.fixture
def restore_root():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_have_fields_and_context(restore_root) -> None:
    out = io.StringIO()
    setup_logging("INFO", json=True, stream=out)
    log = logging.getLogger("stream_orch.test")
    log.debug("not shown")
    log.error(
        "bad record %s", "x", extra={"node": "enrich", "topic": "payments", "partition": 3, "offset": 42}
    )
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 2
    first = lines[0]
    assert first["level"] == "ERROR" and first["logger"] == "stream_orch.test"
    assert first["message"] == "bad record x"
    assert (first["node"], first["topic"], first["partition"], first["offset"]) == (
        "enrich",
        "payments",
        3,
        42,
    )
    assert first["ts"].endswith("+00:00")
    assert "ValueError: boom" in lines[1]["exc"]


def test_text_format_appends_context_and_setup_is_idempotent(restore_root) -> None:
    out = io.StringIO()
    setup_logging("WARNING", json=False, stream=out)
    setup_logging("WARNING", json=False, stream=out)  # no duplicated lines
    logging.getLogger("x").warning("slow", extra={"node": "n", "topic": "t", "partition": 1, "offset": 9})
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith("x: slow [n t/1@9]")


def test_repeated_aiokafka_lines_are_held_back_and_counted() -> None:
    now = [0.0]
    f = RepeatFilter(window_s=10.0, clock=lambda: now[0])

    def rec(name: str, msg: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)

    refused = "Unable connect to node with id %s: %s"
    assert f.filter(rec("aiokafka", refused, 1, "refused"))
    assert not any(f.filter(rec("aiokafka", refused, 1, "refused")) for _ in range(500))
    assert f.filter(rec("aiokafka", "Unable to update metadata from %s", [1])), "another template"
    assert all(f.filter(rec("stream_orch.runtime.node", "node failed")) for _ in range(3)), "ours pass"
    now[0] = 10.5
    again = rec("aiokafka", refused, 1, "refused")
    assert f.filter(again)
    assert again.getMessage() == (
        "Unable connect to node with id 1: refused (500 more like this in the previous 10s not shown)"
    )
    now[0] = 21.0
    quiet = rec("aiokafka", refused, 1, "refused")
    assert f.filter(quiet) and quiet.getMessage() == "Unable connect to node with id 1: refused"
