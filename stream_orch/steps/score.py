"""``score``: weighted rules, optionally a logistic term.

score = sum of the weights of the rules whose ``when`` is true, plus
``1 / (1 + exp(-(intercept + sum(coef * field))))`` when ``logistic`` is set; then capped at
``cap`` (when not null) and rounded to ``round`` decimals (when not null). The names of the rules
that fired go, in rule order, to the ``reasons`` field (a list of strings, empty when none).
A rule that cannot be evaluated for a record sends it to ``ctx.reject``
(``expression_error: rule <name>: ...``); so does a logistic field that is not a number
(``invalid_field``) and a score that is not finite (``expression_error: score: ...``, e.g. the
logistic sum overflowing to inf - inf).

The rules run as one generated function with their compiled expressions inline (a call and a
loop turn per rule were about a third of the step). It has no error handling of its own: when
it raises, the record is scored again rule by rule, which names the rule that failed (the
expressions read the record and change nothing, so the second pass sees what the first did).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from stream_orch.expressions.hoist import hoist_reads
from stream_orch.steps.base import Event, StepContext
from stream_orch.steps.common import Invalid, StepBuild, show
from stream_orch.topology.models import ScoreStep

_FINISHED_KEPT = 4096  # finished scores kept per step (then forgotten)


class ScoreStepImpl:
    @classmethod
    def from_spec(cls, spec: ScoreStep, build: StepBuild) -> ScoreStepImpl:
        rules = [(r.name, build.expression(r.when, f"rule {r.name}"), r.weight) for r in spec.rules]
        logistic = None
        if spec.logistic is not None:
            logistic = (spec.logistic.intercept, dict(spec.logistic.coefficients))
        return cls(
            rules,
            as_=spec.as_,
            reasons=spec.reasons,
            cap=spec.cap,
            round_to=spec.round,
            logistic=logistic,
            name=build.name,
        )

    def __init__(
        self,
        rules: list[tuple[str, Any, float]],
        *,
        as_: str = "score",
        reasons: str = "reasons",
        cap: float | None = 1.0,
        round_to: int | None = 2,
        logistic: tuple[float, dict[str, float]] | None = None,
        name: str = "score",
    ) -> None:
        """``rules``: (name, compiled expression with ``.fn``, weight) in order."""
        self.name = name
        self._rules = tuple((rule_name, expr.fn, float(weight)) for rule_name, expr, weight in rules)
        self._fused = _fuse(rules)
        self._as = as_
        self._reasons = reasons
        self._cap = cap
        self._round = round_to
        self._logistic = (float(logistic[0]), tuple(logistic[1].items())) if logistic else None
        # the capped and rounded score by the sum of the weights that fired: without a logistic
        # term there are few such sums (one per set of rules firing), and round(x, 2) cost 0.22
        # us a record against 0.02 for the lookup. A sum is never -0.0 (it starts at 0.0), so
        # no two keys that compare equal would want different results.
        plain = logistic is not None or (cap is None and round_to is None)
        self._finished: dict[float, float] | None = None if plain else {}

    def _logistic_term(self, record: dict[str, Any]) -> float:
        intercept, coefficients = self._logistic  # type: ignore[misc]
        z = intercept
        for field, coef in coefficients:
            value = record.get(field)
            if value.__class__ is not int and value.__class__ is not float:
                raise Invalid(
                    f"invalid_field: {field} must be a number for the logistic term (got {show(value)})"
                )
            z += coef * value
        if z < -700:
            return 0.0
        return 1.0 / (1.0 + math.exp(-z))

    async def run(self, events: list[Event], ctx: StepContext) -> list[Event]:
        rules, as_, reasons_field = self._rules, self._as, self._reasons
        cap, digits, logistic = self._cap, self._round, self._logistic
        fused = self._fused
        finished = self._finished
        out: list[Event] = []
        append = out.append
        for event in events:
            record = event.value
            rule_name = ""
            try:
                try:
                    total, fired = fused(record)
                except Exception:  # again rule by rule: which one failed, and why
                    total, fired = 0.0, []
                    for rule_name, fn, weight in rules:
                        if fn(record):
                            total += weight
                            fired.append(rule_name)
                if logistic is not None:
                    rule_name = "logistic"
                    total += self._logistic_term(record)
            except Invalid as exc:
                ctx.reject(event, str(exc))
                continue
            except Exception as exc:
                ctx.reject(event, f"expression_error: rule {rule_name}: {exc}", exc)
                continue
            if total - total:  # nan (true) for inf and nan: e.g. two logistic terms overflowing
                ctx.reject(event, f"expression_error: score: the score is not a finite number ({total})")
                continue
            if finished is not None:
                score = finished.get(total)
                if score is None:
                    if len(finished) >= _FINISHED_KEPT:  # many rules: more sums than kept
                        finished.clear()
                    score = finished[total] = _finish(total, cap, digits)
            else:
                score = _finish(total, cap, digits)
            record[as_] = score
            record[reasons_field] = fired
            append(event)
        return out


def _finish(total: float, cap: float | None, digits: int | None) -> float:
    """The score written for a sum: capped, then rounded."""
    if cap is not None and total > cap:
        total = cap
    if digits is not None:
        total = round(total, digits)
    return total


def _fuse(rules: list[tuple[str, Any, float]]) -> Callable[[dict[str, Any]], tuple[float, list[str]]]:
    """The rules as one function of a record: (the sum of the weights that fired, their names).

    Each rule's compiled body (whitelisted, generated by the expression compiler) is inlined
    over its own globals, whose names are unique per expression, a field that several rules read
    read once (:func:`~stream_orch.expressions.hoist.hoist_reads`: the fraud rules read
    amount_eur three times); rule names and weights enter the source only through ``repr``."""
    namespace: dict[str, Any] = {}
    reads, bodies = hoist_reads([expr.body for _, expr, _ in rules])  # a field read by several rules once
    lines = ["def rules(r):", *(f"    {read}" for read in reads), "    total = 0.0", "    fired = []"]
    for (rule_name, expr, weight), body in zip(rules, bodies, strict=True):
        namespace.update(expr.fn.__globals__)
        lines += [
            f"    if {body}:",
            f"        total += {float(weight)!r}",
            f"        fired.append({rule_name!r})",
        ]
    lines.append("    return total, fired")
    namespace["__builtins__"] = {}
    exec(compile("\n".join(lines) + "\n", "<score rules>", "exec"), namespace)
    return namespace["rules"]
