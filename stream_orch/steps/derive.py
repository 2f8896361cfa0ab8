"""``derive``: computed fields, in order (a later one may use an earlier one).

Each expression is compiled once. A record whose evaluation fails (a missing field, a bad type,
a division by zero, a result beyond the expression language's bounds) or whose result is a float
that is not finite (``amount * rate`` overflowing to inf) goes to ``ctx.reject`` with
``expression_error: <field>: <why> in `<expr>```. Records are changed in place.
"""

from __future__ import annotations

from typing import Any

from stream_orch.expressions import EvaluationError
from stream_orch.steps.base import Event, StepContext
from stream_orch.steps.common import StepBuild
from stream_orch.topology.models import DeriveStep


class DeriveStepImpl:
    @classmethod
    def from_spec(cls, spec: DeriveStep, build: StepBuild) -> DeriveStepImpl:
        compiled = {field: build.expression(src, f"field {field}") for field, src in spec.fields.items()}
        return cls(compiled, name=build.name)

    def __init__(self, compiled: dict[str, Any], *, name: str = "derive") -> None:
        """``compiled``: field name to a compiled expression (anything with ``.fn(record)``)."""
        self.name = name
        self._fields = tuple((field, expr.fn) for field, expr in compiled.items())
        self._sources = {field: getattr(expr, "source", "") for field, expr in compiled.items()}

    async def run(self, events: list[Event], ctx: StepContext) -> list[Event]:
        fields = self._fields
        out: list[Event] = []
        append = out.append
        for event in events:
            record = event.value
            field = ""
            try:
                for field, fn in fields:
                    value = fn(record)
                    # inf - inf and nan - nan are nan, which is true: a float that is not finite
                    # (JSON has no such number; it would go out as null, or break a later sum)
                    if value.__class__ is float and value - value:
                        message = f"the result is not a finite number ({value})"
                        raise EvaluationError(message, self._sources[field])
                    record[field] = value
            except Exception as exc:
                ctx.reject(event, f"expression_error: {field}: {exc}", exc)
                continue
            append(event)
        return out
