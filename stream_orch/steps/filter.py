"""``filter``: keep the records for which the condition is true; the rest are dropped and
counted under ``filtered``. A failing evaluation goes to ``ctx.reject`` (``expression_error``)."""

from __future__ import annotations

from typing import Any, Literal

from stream_orch.steps.base import Event, StepContext
from stream_orch.steps.common import StepBuild
from stream_orch.topology.models import FilterStep


class FilterStepImpl:
    per_record: Literal[True] = True  # a PerRecordStep: its node may run a batch in slices

    @classmethod
    def from_spec(cls, spec: FilterStep, build: StepBuild) -> FilterStepImpl:
        return cls(build.expression(spec.when, "when"), name=build.name)

    def __init__(self, compiled: Any, *, name: str = "filter") -> None:
        self.name = name
        self.source = getattr(compiled, "source", "")
        self._fn = compiled.fn

    async def run(self, events: list[Event], ctx: StepContext) -> list[Event]:
        fn = self._fn
        out: list[Event] = []
        append = out.append
        for event in events:
            try:
                keep = fn(event.value)
            except Exception as exc:
                ctx.reject(event, f"expression_error: filter: {exc}", exc)
                continue
            if keep:
                append(event)
            else:
                ctx.drop(event, "filtered")
        return out
