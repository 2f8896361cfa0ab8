"""The SIGUSR1 dump: the tasks, then one JSON line a node with its consumer's view (runtime/sigusr1.py)."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_orch.runtime import sigusr1


def _runner(name: str, consumer: AIOKafkaConsumer | None) -> Any:
    return SimpleNamespace(
        name=name,
        restarts=2,
        spec=SimpleNamespace(processing="exactly_once"),
        assigned={TopicPartition("in", 1), TopicPartition("in", 0)},
        consumer=consumer,
        busy=True,
    )


async def test_dump_prints_the_tasks_then_one_line_a_node_with_or_without_its_consumer() -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")  # never started: not in a group
    out = io.StringIO()
    sigusr1.dump([_runner("score", consumer), _runner("route", None)], out)
    text = out.getvalue()
    assert text.startswith("--- ") and "asyncio tasks ---" in text
    score, route = (json.loads(line) for line in text.splitlines() if line.startswith("{"))
    assert score == {
        "node": "score",
        "restarts": 2,
        "processing": "exactly_once",
        "assigned": ["in[0]", "in[1]"],
        "paused": [],
        "coordinator_id": None,
        "generation": None,
        "member_id": None,
        "position_highwater": {},
        "delivery_busy": True,
    }
    assert route == {"node": "route", "consumer": None, "restarts": 2}
