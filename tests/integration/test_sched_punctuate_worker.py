"""`punctuate` on the real broker, run by a worker process under exactly_once: records stop
coming, and the windows they opened are emitted by the wall clock (the worker punctuates the idle
partitions), each once, with the counts a reference computes from the records sent."""

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


def _doc() -> dict[str, Any]:
    return {
        "topology": "punct",
        "processing": "exactly_once",
        "topics": {
            "clicks": {"partitions": 2, "key": "user"},
            "counts": {"partitions": 2, "key": "user"},
            "clicks.dlq": {"partitions": 1},
        },
        "tables": {"per_user": {}},
        "nodes": {
            "work": {
                "input": "clicks",
                "punctuate": {"every": "1s", "lateness": "500ms"},
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


async def test_windows_close_by_the_wall_clock_when_records_stop(tmp_path: Path) -> None:
    path, names, group = rh.topology_copy(tmp_path, _doc())
    for topic in ("clicks", "counts"):
        await create_topic(th.BOOTSTRAP, names[topic], partitions=2)
    worker = rh.worker(path, tmp_path / "w.log").start()
    out = names["counts"]
    try:
        await th.wait_for_group(group)
        now = int(time.time() * 1000)
        sent = [{"user": f"u{i % 5}", "ts": now + i * 10} for i in range(40)]
        await th.produce_raw(names["clicks"], [(r["user"].encode(), orjson.dumps(r)) for r in sent])
        expected = Counter((r["user"], r["ts"] - r["ts"] % SIZE_MS) for r in sent)  # the reference
        async with rh.Watcher([out]) as watch:
            # nothing more is sent: only the punctuations can close these windows
            assert await watch.wait(
                lambda w: sum(orjson.loads(r.value)["n"] for r in w.records[out]) >= len(sent),
                timeout=60,
                settle=3,
            ), worker.log()
            got = [orjson.loads(r.value) for r in watch.records[out]]
    finally:
        worker.stop()
    emitted = Counter((r["user"], r["window_start"]) for r in got)
    assert [k for k, n in emitted.items() if n > 1] == []  # each window once
    assert {(r["user"], r["window_start"]): r["n"] for r in got} == dict(expected)
