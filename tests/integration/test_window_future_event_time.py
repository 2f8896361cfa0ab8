"""Trust: a record's event time is untrusted. A window result used to be stamped with its window's
end, so records whose event time lay more than an hour ahead made results the broker refuses
(Kafka 4's `log.message.timestamp.after.max.ms` is one hour): InvalidTimestampError, and the node
started over on the same batch forever. A result is now stamped no later than the record that
produced it, whose timestamp the broker accepted."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka_helpers import create_topic

from tests import reliability_harness as rh
from tests import topology_harness as th

pytestmark = pytest.mark.integration

SIZE_MS = 2000
AHEAD_MS = 3 * 3600 * 1000  # three hours ahead of the wall clock


def _doc() -> dict[str, Any]:
    return {
        "topology": "future",
        "processing": "exactly_once",
        "topics": {
            "clicks": {"partitions": 1, "key": "user"},
            "counts": {"partitions": 1, "key": "user"},
            "clicks.dlq": {"partitions": 1},
        },
        "tables": {"per_user": {}},
        "nodes": {
            "work": {
                "input": "clicks",
                "steps": [
                    {
                        "step": "window",
                        "table": "per_user",
                        "key": "user",
                        "kind": "tumbling",
                        "size": "2s",
                        "as": "n",
                        "time_field": "ts",
                    },
                ],
                "routes": [{"to": "counts"}],
                "errors": {"dlq": "clicks.dlq"},
            }
        },
    }


async def test_records_hours_ahead_of_the_clock_close_their_windows(tmp_path: Path) -> None:
    path, names, group = rh.topology_copy(tmp_path, _doc())
    for topic in ("clicks", "counts"):
        await create_topic(th.BOOTSTRAP, names[topic], partitions=1)
    worker = rh.worker(path, tmp_path / "w.log").start()
    out = names["counts"]
    try:
        await th.wait_for_group(group)
        base = int(time.time() * 1000) + AHEAD_MS
        base -= base % SIZE_MS
        sent = [{"user": f"u{i % 3}", "ts": base + i * 100} for i in range(30)]  # 3 s of event time
        closer = {"user": "u0", "ts": base + 60_000}  # moves the watermark past every window above
        records = [*sent, closer]
        await th.produce_raw(names["clicks"], [(r["user"].encode(), orjson.dumps(r)) for r in records])
        expected = Counter((r["user"], r["ts"] - r["ts"] % SIZE_MS) for r in sent)  # the reference
        async with rh.Watcher([out]) as watch:
            assert await watch.wait(
                lambda w: sum(orjson.loads(r.value)["n"] for r in w.records[out]) >= len(sent),
                timeout=60,
                settle=2,
            ), worker.log()
            got = [(orjson.loads(r.value), r.timestamp) for r in watch.records[out]]
        log = worker.log()
    finally:
        worker.stop()
    assert "InvalidTimestampError" not in log
    emitted = Counter((v["user"], v["window_start"]) for v, _ in got)
    assert [k for k, n in emitted.items() if n > 1] == []  # each window once
    assert {(v["user"], v["window_start"]): v["n"] for v, _ in got} == dict(expected)
    assert all(ts <= time.time() * 1000 for _, ts in got)  # stamped by the closing record
