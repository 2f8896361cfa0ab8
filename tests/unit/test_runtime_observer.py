"""/ready follows the nodes: 503 from the start until every node has taken over its first
assignment, and while any node restores."""

from __future__ import annotations

from dataclasses import dataclass, field

from stream_orch.observability.health import HealthState
from stream_orch.observability.metrics import Metrics
from stream_orch.runtime.observer import NodeObserver


@dataclass
class _Runner:
    name: str
    ready: bool = False
    recovering: bool = False
    local_tables: list = field(default_factory=list)


def test_ready_only_once_every_node_has_taken_over_its_first_assignment() -> None:
    health = HealthState()
    observer = NodeObserver(Metrics(), health)
    a, b = _Runner("a"), _Runner("b")
    for runner in (a, b):
        observer.watch(runner)  # type: ignore[arg-type]
    assert health._ready is False, "starting: not ready"

    a.ready = True
    observer.recovering(a, False)  # type: ignore[arg-type]
    assert health._ready is False, "b has not taken over its first assignment yet"

    b.recovering = True
    observer.recovering(b, True)  # type: ignore[arg-type]
    b.ready, b.recovering = True, False
    observer.recovering(b, False)  # type: ignore[arg-type]
    assert health._ready is True

    a.recovering = True
    observer.recovering(a, True)  # type: ignore[arg-type]
    assert health._ready is False, "a rebalance: restoring again"
