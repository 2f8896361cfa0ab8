"""``derive``: computed fields, in order (a later one may use an earlier one).

Each expression is compiled once. A record whose evaluation fails (a missing field, a bad type,
a division by zero, a result beyond the expression language's bounds) or whose result is a float
that is not finite (``amount * rate`` overflowing to inf) goes to ``ctx.reject`` with
``expression_error: <field>: <why> in `<expr>```. Records are changed in place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from stream_orch.expressions import EvaluationError
from stream_orch.steps.base import Event, StepContext
from stream_orch.steps.common import StepBuild
from stream_orch.topology.models import DeriveStep


class DeriveStepImpl:
    per_record: Literal[True] = True  # a PerRecordStep: its node may run a batch in slices

    @classmethod
    def from_spec(cls, spec: DeriveStep, build: StepBuild) -> DeriveStepImpl:
        compiled = {field: build.expression(src, f"field {field}") for field, src in spec.fields.items()}
        return cls(compiled, name=build.name)

    def __init__(self, compiled: dict[str, Any], *, name: str = "derive") -> None:
        """``compiled``: field name to a compiled expression (anything with ``.fn(record)``)."""
        self.name = name
        self._fields = tuple((field, expr.fn) for field, expr in compiled.items())
        self._sources = {field: getattr(expr, "source", "") for field, expr in compiled.items()}
        self._fused = _fuse(compiled)

    async def run(self, events: list[Event], ctx: StepContext) -> list[Event]:
        out: list[Event] = []
        if self._fused is None:
            self._run(events, ctx, out.append, 0)
        else:
            append = out.append
            self._fused(events, append, lambda event, start: self._run((event,), ctx, append, start))
        return out

    def _run(self, events: Any, ctx: StepContext, append: Callable[[Event], None], start: int) -> None:
        """The fields from ``start`` on, one compiled function each: a record the fused function
        raised on is evaluated again here (expressions have no side effects), which names what
        failed as before."""
        fields = self._fields[start:]
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


class _Again(Exception):
    """A float that is not finite: :meth:`DeriveStepImpl._run` names it."""


def _fuse(compiled: dict[str, Any]) -> Callable[..., None] | None:
    """The fields as one function over a batch's events, each compiled body inline over its
    own globals (their names are unique per expression; the error raisers they share are only
    called on failure): ``fused(events, append, again)`` appends each event whose fields were
    all set, and calls ``again(event, i)`` for one whose field ``i`` failed, fields before it
    set. None when an expression has no body to inline."""
    if not compiled or not all(getattr(expr, "body", "") for expr in compiled.values()):
        return None
    namespace: dict[str, Any] = {}
    lines = [
        "def derive(events, append, again):",
        "    for event in events:",
        "        r = event.value",
        "        i = 0",
        "        try:",
    ]
    for i, (field, expr) in enumerate(compiled.items()):
        namespace.update(expr.fn.__globals__)
        lines += [
            f"            v = {expr.body}",
            "            if v.__class__ is __float and v - v:",
            "                raise __Again",
            f"            r[{field!r}] = v",
            f"            i = {i + 1}",
        ]
    lines += [
        "        except __Exception:",
        "            again(event, i)",
        "            continue",
        "        append(event)",
    ]
    namespace.update(__builtins__={}, __float=float, __Again=_Again, __Exception=Exception)
    exec(compile("\n".join(lines) + "\n", "<derive>", "exec"), namespace)  # bodies: the compiler's
    return namespace["derive"]
