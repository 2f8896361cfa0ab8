"""Build the step objects of a node from their spec models, once, when the node starts.

``build_step(spec_model, *, topology_spec, schemas, node_name) -> Step``. Everything per step
(schemas, compiled expressions, imported functions, normalisation rules) is prepared here; a
configuration that cannot be built raises :class:`StepConfigError` (a ``UserError``) naming the
node and the step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stream_orch.codecs.schemas import SchemaError
from stream_orch.steps.aggregate import AggregateStepImpl
from stream_orch.steps.common import StepConfigError
from stream_orch.steps.dedupe import DedupeStepImpl
from stream_orch.steps.derive import DeriveStepImpl
from stream_orch.steps.enrich import EnrichStepImpl
from stream_orch.steps.filter import FilterStepImpl
from stream_orch.steps.join import JoinStepImpl
from stream_orch.steps.mask import MaskStepImpl
from stream_orch.steps.normalize import NormalizeStepImpl
from stream_orch.steps.python_step import PythonStepImpl
from stream_orch.steps.score import ScoreStepImpl
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
    NormalizeStep,
    PythonStep,
    ScoreStep,
    ValidateStep,
    WindowStep,
)
from stream_orch.topology.models_time import JoinBound

if TYPE_CHECKING:
    from stream_orch.codecs.schemas import SchemaRegistry
    from stream_orch.steps.base import Step
    from stream_orch.topology.models import TopologySpec

__all__ = ["StepConfigError", "build_step", "build_steps"]


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
    where = f"node {node_name}, step {name}"
    constants = topology_spec.constants

    def compile_(source: str, what: str) -> Any:
        from stream_orch.expressions import ExpressionError, compile_expression

        try:
            return compile_expression(source, constants=constants)
        except ExpressionError as exc:
            raise StepConfigError(f"{where}: {what}: {exc} in `{source}`") from None

    if isinstance(spec_model, NormalizeStep):
        return NormalizeStepImpl(spec_model, name=name)
    if isinstance(spec_model, ValidateStep):
        schema_name = spec_model.schema_
        if schema_name is None:
            node = topology_spec.nodes.get(node_name)
            topic = topology_spec.topics.get(node.input) if node is not None else None
            schema_name = topic.schema_ if topic is not None else None
            if schema_name is None:
                raise StepConfigError(f"{where}: validate needs `schema:` or an input topic with a schema")
        try:
            check = schemas.validator(schema_name)
        except SchemaError as exc:
            raise StepConfigError(f"{where}: {exc}") from None
        return ValidateStepImpl(check, schema_name=schema_name, name=name)
    if isinstance(spec_model, DeriveStep):
        compiled = {field: compile_(src, f"field {field}") for field, src in spec_model.fields.items()}
        return DeriveStepImpl(compiled, name=name)
    if isinstance(spec_model, FilterStep):
        return FilterStepImpl(compile_(spec_model.when, "when"), name=name)
    if isinstance(spec_model, DedupeStep):
        return DedupeStepImpl(
            field=spec_model.field,
            table=spec_model.table,
            horizon_ms=spec_model.horizon,
            time_field=spec_model.time_field,
            name=name,
        )
    if isinstance(spec_model, EnrichStep):
        return EnrichStepImpl(
            table=spec_model.table,
            key=spec_model.key,
            fields=spec_model.fields,
            prefix=spec_model.prefix,
            on_missing=spec_model.on_missing,
            defaults=spec_model.defaults,
            missing_reason=spec_model.missing_reason,
            name=name,
        )
    if isinstance(spec_model, AggregateStep):
        return AggregateStepImpl(
            table=spec_model.table,
            key=spec_model.key,
            window_ms=spec_model.window,
            function=spec_model.function,
            field=spec_model.field,
            time_field=spec_model.time_field,
            as_=spec_model.as_,
            when=compile_(spec_model.when, "when").fn if spec_model.when else None,
            name=name,
        )
    if isinstance(spec_model, JoinStep):
        declared = spec_model.fields
        other = topology_spec.topics.get(spec_model.topic)
        if declared is None and other is not None and other.schema_ and other.schema_ in schemas:
            declared = schemas.field_names(other.schema_)
        return JoinStepImpl(
            topic=spec_model.topic,
            table=spec_model.table,
            key=spec_model.key,
            other_key=spec_model.other_key,
            time_field=spec_model.time_field,
            kind=spec_model.kind,
            before_ms=_bound(spec_model.before),
            after_ms=_bound(spec_model.after),
            tolerance_ms=spec_model.tolerance,
            how=spec_model.how,
            grace_ms=spec_model.grace,
            fields=spec_model.fields,
            declared=declared,
            prefix=spec_model.prefix,
            status_as=spec_model.status_as,
            name=name,
        )
    if isinstance(spec_model, WindowStep):
        return WindowStepImpl(
            table=spec_model.table,
            key=spec_model.key,
            kind=spec_model.kind,
            as_=spec_model.as_,
            size_ms=spec_model.size,
            advance_ms=spec_model.advance,
            gap_ms=spec_model.gap,
            grace_ms=spec_model.grace,
            function=spec_model.function,
            field=spec_model.field,
            aggregate=spec_model.results() if spec_model.aggregate is not None else None,
            time_field=spec_model.time_field,
            emit=spec_model.emit,
            late=spec_model.late,
            name=name,
        )
    if isinstance(spec_model, ScoreStep):
        rules = [(r.name, compile_(r.when, f"rule {r.name}"), r.weight) for r in spec_model.rules]
        logistic = None
        if spec_model.logistic is not None:
            logistic = (spec_model.logistic.intercept, dict(spec_model.logistic.coefficients))
        return ScoreStepImpl(
            rules,
            as_=spec_model.as_,
            reasons=spec_model.reasons,
            cap=spec_model.cap,
            round_to=spec_model.round,
            logistic=logistic,
            name=name,
        )
    if isinstance(spec_model, MaskStep):
        return MaskStepImpl(dict(spec_model.fields), spec_model.salt, name=name)
    if isinstance(spec_model, PythonStep):
        try:
            return PythonStepImpl(
                spec_model.function, batch=spec_model.batch, retry_on=spec_model.retry_on, name=name
            )
        except StepConfigError as exc:
            raise StepConfigError(f"{where}: {exc}") from None
    raise StepConfigError(f"{where}: unknown step kind {kind!r}")


def _bound(bound: int | JoinBound) -> int | tuple[str, int]:
    """A join bound for the step: a duration, or (field, max) when each record carries it."""
    return bound if isinstance(bound, int) else (bound.field, bound.max)


def build_steps(topology_spec: TopologySpec, node_name: str, schemas: SchemaRegistry) -> list[Step]:
    """Every step of a node, in order."""
    node = topology_spec.nodes[node_name]
    return [
        build_step(s, topology_spec=topology_spec, schemas=schemas, node_name=node_name, index=i)
        for i, s in enumerate(node.steps)
    ]
