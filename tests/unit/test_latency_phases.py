"""Where a batch's time goes: the phases the loop and the delivery note in a batch's figures
reach /metrics as one histogram family, one observation per phase and batch."""

from __future__ import annotations

from dataclasses import dataclass, field

from stream_orch.observability.health import HealthState
from stream_orch.observability.metrics import Metrics
from stream_orch.runtime.batch import PHASES, BatchStats
from stream_orch.runtime.observer import NodeObserver


@dataclass
class _Node:
    input: str = "in"


@dataclass
class _Spec:
    topology: str = "t"


@dataclass
class _Runner:
    name: str = "n"
    node: _Node = field(default_factory=_Node)
    spec: _Spec = field(default_factory=_Spec)
    local_tables: list = field(default_factory=list)


def _sample(metrics: Metrics, suffix: str, phase: str) -> float | None:
    return metrics.registry.get_sample_value(
        "stream_orch_batch_phase_seconds" + suffix, {"node": "n", "phase": phase}
    )


def test_each_phase_of_each_batch_is_one_observation_of_its_seconds() -> None:
    metrics = Metrics()
    observer = NodeObserver(metrics, HealthState())
    runner = _Runner()
    seconds = {phase: 0.001 * (i + 1) for i, phase in enumerate(PHASES)}
    for _ in range(3):
        stats = BatchStats(n_in=10, phases=list(seconds.items()))
        observer.batch_done(runner, stats)  # type: ignore[arg-type]
    for phase, s in seconds.items():
        assert _sample(metrics, "_count", phase) == 3
        assert abs((_sample(metrics, "_sum", phase) or 0) - 3 * s) < 1e-9
    assert _sample(metrics, "_count", "other") is None, "no phase the batch did not report"
