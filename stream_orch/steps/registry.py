"""Build the step objects of a node from their spec models, once, when the node starts.

``build_step(spec_model, *, topology_spec, schemas, node_name) -> Step``. Each step
implementation builds itself from its model with ``from_spec(spec, build)`` (schemas, compiled
expressions, imported functions, normalisation rules are prepared there); :data:`BUILDERS` maps a
model type to it. A configuration that cannot be built raises :class:`StepConfigError` (a
``UserError``) naming the node and the step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stream_orch.steps.aggregate import AggregateStepImpl
from stream_orch.steps.common import StepBuild, StepConfigError
from stream_orch.steps.dedupe import DedupeStepImpl
from stream_orch.steps.derive import DeriveStepImpl
from stream_orch.steps.enrich import EnrichStepImpl
from stream_orch.steps.filter import FilterStepImpl
from stream_orch.steps.join import JoinStepImpl
from stream_orch.steps.lookup_many import LookupManyStepImpl
from stream_orch.steps.mask import MaskStepImpl
from stream_orch.steps.model import ModelStepImpl
from stream_orch.steps.normalize import NormalizeStepImpl
from stream_orch.steps.python_step import PythonStepImpl
from stream_orch.steps.running_aggregate import RunningAggregateImpl
from stream_orch.steps.score import ScoreStepImpl
from stream_orch.steps.tick import TickStepImpl
from stream_orch.steps.validate import ValidateStepImpl
from stream_orch.steps.window_emit import WindowStepImpl
from stream_orch.topology.models import (
    AggregateStep,
    DedupeStep,
    DeriveStep,
    EnrichStep,
    FilterStep,
    JoinStep,
    MaskStep,
    ModelStep,
    NormalizeStep,
    PythonStep,
    ScoreStep,
    ValidateStep,
    WindowStep,
)
from stream_orch.topology.models_lookup import LookupManyStep
from stream_orch.topology.models_schedule import TickStep

if TYPE_CHECKING:
    from stream_orch.codecs.schemas import SchemaRegistry
    from stream_orch.steps.base import Step
    from stream_orch.topology.models import TopologySpec

__all__ = ["BUILDERS", "StepConfigError", "build_step", "build_steps", "link_steps"]

#: Step model type -> the ``from_spec`` of its implementation.
BUILDERS: dict[type, Callable[[Any, StepBuild], Step]] = {
    NormalizeStep: NormalizeStepImpl.from_spec,
    ValidateStep: ValidateStepImpl.from_spec,
    DeriveStep: DeriveStepImpl.from_spec,
    FilterStep: FilterStepImpl.from_spec,
    DedupeStep: DedupeStepImpl.from_spec,
    EnrichStep: EnrichStepImpl.from_spec,
    LookupManyStep: LookupManyStepImpl.from_spec,
    AggregateStep: lambda spec, build: (
        RunningAggregateImpl if spec.window is None else AggregateStepImpl
    ).from_spec(spec, build),
    JoinStep: JoinStepImpl.from_spec,
    WindowStep: WindowStepImpl.from_spec,
    ScoreStep: ScoreStepImpl.from_spec,
    MaskStep: MaskStepImpl.from_spec,
    PythonStep: PythonStepImpl.from_spec,
    ModelStep: ModelStepImpl.from_spec,
    TickStep: TickStepImpl.from_spec,
}


def build_step(
    spec_model: Any,
    *,
    topology_spec: TopologySpec,
    schemas: SchemaRegistry,
    node_name: str,
    index: int | None = None,
) -> Step:
    """The step object for one step spec of node ``node_name``.

    Its ``name`` is ``<node>.<index>.<kind>`` when ``index`` is given, else ``<node>.<kind>``.
    """
    kind = spec_model.step
    name = f"{node_name}.{index}.{kind}" if index is not None else f"{node_name}.{kind}"
    build = StepBuild(topology_spec, schemas, node_name, name)
    builder = BUILDERS.get(type(spec_model))
    if builder is None:
        raise StepConfigError(f"{build.where}: unknown step kind {kind!r}")
    return builder(spec_model, build)


def build_steps(topology_spec: TopologySpec, node_name: str, schemas: SchemaRegistry) -> list[Step]:
    """Every step of a node, in order."""
    node = topology_spec.nodes[node_name]
    steps = [
        build_step(s, topology_spec=topology_spec, schemas=schemas, node_name=node_name, index=i)
        for i, s in enumerate(node.steps)
    ]
    link_steps(steps)
    return steps


def link_steps(steps: list[Step]) -> None:
    """Tell each step what the step before it guarantees: a ``validate`` right after a
    ``normalize`` leaves out the checks of the fields the normalize always sets to a value the
    schema takes. Called whenever a node's steps are built or some rebuilt (a reload)."""
    for before, step in zip([None, *steps], steps, strict=False):
        if isinstance(step, ValidateStepImpl):
            step.follow(before.settled() if isinstance(before, NormalizeStepImpl) else {})
