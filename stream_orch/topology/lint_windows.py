"""Lint of the fields the window and join steps read from their new forms: a window's ``field``
(the ``as`` form) or the field of each ``aggregate`` result, and a join's bound ``{field, max}``;
each must be a field of the records reaching the step."""

from __future__ import annotations

from typing import Protocol

from stream_orch.topology.loader import PathTuple
from stream_orch.topology.models import AggregateStep, JoinStep, WindowStep
from stream_orch.topology.models_time import JoinBound


class _FieldCheck(Protocol):
    def _field(self, path: PathTuple, name: str, avail: set[str] | None, what: str) -> None: ...


def window_fields(
    linter: _FieldCheck, path: PathTuple, step: WindowStep | AggregateStep, avail: set[str] | None, where: str
) -> None:
    """Every field a window (or sliding aggregate) result reads is known here (the path points at
    where it is written)."""
    if step.aggregate is None:
        if step.field:
            linter._field((*path, "field"), step.field, avail, where)
        return
    for name, (function, field) in step.results().items():
        if field is not None:
            linter._field((*path, "aggregate", name, function), field, avail, f"{where}, result `{name}`")


def join_bound_fields(
    linter: _FieldCheck, path: PathTuple, step: JoinStep, avail: set[str] | None, where: str
) -> None:
    """A bound taken from a field names a field of the input's records."""
    for name in ("before", "after"):
        bound = getattr(step, name)
        if isinstance(bound, JoinBound):
            linter._field((*path, name, "field"), bound.field, avail, f"{where}, {name} bound")
