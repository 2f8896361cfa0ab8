"""What a worker prints to stderr on SIGUSR1, for one that is alive but seems stuck: every asyncio
task with its await chain (observability/loop.py), then one JSON line a node with its consumer's
view of its group and partitions (transport/consumer_view.py). The worker carries on."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TextIO

from stream_orch.observability.loop import dump_tasks
from stream_orch.transport.consumer_view import consumer_view

if TYPE_CHECKING:
    from stream_orch.runtime.node import NodeRunner


def node_view(runner: NodeRunner) -> dict[str, Any]:
    """The node and its consumer's view of its group and partitions (no consumer: not in its
    group, e.g. between a failed batch and its re-join)."""
    consumer = runner.consumer
    if consumer is None:
        return {"node": runner.name, "consumer": None, "restarts": runner.restarts}
    return {
        "node": runner.name,
        "restarts": runner.restarts,
        "processing": runner.spec.processing,
        "assigned": sorted(f"{tp.topic}[{tp.partition}]" for tp in runner.assigned),
        **consumer_view(consumer),
        "delivery_busy": runner.busy,
    }


def dump(runners: Iterable[NodeRunner], file: TextIO | None = None) -> None:
    """The tasks, then each node's view."""
    out = file or sys.stderr
    dump_tasks(out)
    for runner in runners:
        print(json.dumps(node_view(runner), default=str), file=out, flush=True)
