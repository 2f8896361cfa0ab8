"""Helpers shared by the built-in steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stream_orch.errors import UserError
from stream_orch.expressions import CompiledExpression, ExpressionError, compile_expression
from stream_orch.steps.base import Event, StepContext

if TYPE_CHECKING:
    from stream_orch.codecs.schemas import SchemaRegistry
    from stream_orch.topology.models import TopologySpec


class StepConfigError(UserError):
    """A step's configuration cannot be built (unknown schema, bad expression, bad import path)."""


@dataclass(frozen=True, slots=True)
class StepBuild:
    """What a step implementation's ``from_spec(spec, build)`` may use besides its own model: the
    topology (constants, topics, python places), the schemas, and its name for messages."""

    topology: TopologySpec
    schemas: SchemaRegistry
    node: str
    name: str  # <node>.<index>.<kind>, or <node>.<kind> without an index

    @property
    def where(self) -> str:
        """``node <node>, step <name>``: the start of every build error of the step."""
        return f"node {self.node}, step {self.name}"

    def expression(self, source: str, what: str) -> CompiledExpression:
        """``source`` compiled with the topology's constants; :class:`StepConfigError` naming the step
        and ``what`` (``when``, ``field amount_eur``...) when it does not compile."""
        try:
            return compile_expression(source, constants=self.topology.constants)
        except ExpressionError as exc:
            raise StepConfigError(f"{self.where}: {what}: {exc} in `{source}`") from None


class Invalid(Exception):
    """Raised inside a step's loop for one bad record; ``str()`` is the DLQ reason."""


def show(value: Any) -> str:
    """A short rendering of a value for a reason: ``-5``, ``'12x'``, ``null``."""
    if value is None:
        return "null"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


Ticks = list[tuple[int, int, Event]]  # (offset, event time, the record), in offset order


def passed_over_times(ctx: StepContext, time_field: str) -> dict[tuple[str, int], Ticks]:
    """The event times of the records an earlier step of the batch let go (filtered, duplicate...:
    the context's ``passed_over``), per (topic, partition), as ``(offset, time)`` in offset order.
    A record without a valid time (an int >= 0 in ``time_field``) has none, except a watermark
    record (no value: :mod:`stream_orch.steps.source_watermarks`), which comes with time -1 for
    its header. Empty for a context that does not keep them."""
    out: dict[tuple[str, int], Ticks] = {}
    for event in getattr(ctx, "passed_over", ()):
        t = event.value.get(time_field)
        if t.__class__ is int and t >= 0:
            out.setdefault((event.topic, event.partition), []).append((event.offset, t, event))
        elif event.raw_value is None:
            out.setdefault((event.topic, event.partition), []).append((event.offset, -1, event))
    for times in out.values():
        times.sort(key=lambda x: x[0])
    return out
