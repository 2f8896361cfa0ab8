"""Targets outside Kafka: the :class:`~stream_orch.sinks.base.Sink` seam and its implementations.

:func:`build_sinks` makes one sink per external target of a node (by the target's kind); the
runtime starts them with the node and calls them inside each batch (see :mod:`.base`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stream_orch.sinks.base import (
    DELIVERED,
    Delivered,
    Outcome,
    Reject,
    Retry,
    Sink,
    SinkBatch,
    SinkContext,
    SinkRecord,
)
from stream_orch.sinks.http import HttpSink
from stream_orch.sinks.memory import MemorySink
from stream_orch.topology.models import TopologySpec
from stream_orch.topology.models_delivery import ExternalTarget, HttpTarget, external_targets
from stream_orch.topology.naming import group_id

__all__ = [
    "DELIVERED",
    "Delivered",
    "MemorySink",
    "Outcome",
    "Reject",
    "Retry",
    "Sink",
    "SinkBatch",
    "SinkContext",
    "SinkRecord",
    "build_sinks",
]


def _http(spec: ExternalTarget, ctx: SinkContext) -> Sink:
    assert isinstance(spec, HttpTarget)
    return HttpSink(spec, ctx)


def _postgres(spec: ExternalTarget, ctx: SinkContext) -> Sink:
    from stream_orch.sinks.postgres_sink import PostgresSink  # asyncpg only where a node has one

    return PostgresSink(spec, ctx)


#: kind of target -> how its sink is built; a new kind adds its builder here
BUILDERS: dict[str, Callable[[ExternalTarget, SinkContext], Sink]] = {"http": _http, "postgres": _postgres}


def build_sinks(
    spec: TopologySpec,
    node_name: str,
    observe: Callable[[str, str, float], None] | None = None,
    state: Callable[[str, bool, str], None] | None = None,
    schemas: Any = None,
) -> dict[str, Sink]:
    """One sink per external target of the node, by name (none: an empty dict)."""
    sinks: dict[str, Sink] = {}
    for target in external_targets(spec.nodes[node_name]):
        ctx = SinkContext(spec.topology, node_name, target.name, group_id(spec.topology, node_name))
        if observe is not None:
            ctx.observe = observe
        if state is not None:
            ctx.state = state
        ctx.schemas = schemas
        sinks[target.name] = BUILDERS[target.kind](target.spec, ctx)
    return sinks
