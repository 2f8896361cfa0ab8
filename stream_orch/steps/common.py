"""Helpers shared by the built-in steps."""

from __future__ import annotations

from typing import Any

from stream_orch.errors import UserError
from stream_orch.steps.base import Event, StepContext


class StepConfigError(UserError):
    """A step's configuration cannot be built (unknown schema, bad expression, bad import path)."""


class Invalid(Exception):
    """Raised inside a step's loop for one bad record; ``str()`` is the DLQ reason."""


def show(value: Any) -> str:
    """A short rendering of a value for a reason: ``-5``, ``'12x'``, ``null``."""
    if value is None:
        return "null"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_number(value: Any) -> bool:
    cls = value.__class__
    return cls is int or cls is float


Ticks = list[tuple[int, int, Event]]  # (offset, event time, the record), in offset order


def passed_over_times(ctx: StepContext, time_field: str) -> dict[tuple[str, int], Ticks]:
    """The event times of the records an earlier step of the batch let go (filtered, duplicate...:
    the context's ``passed_over``), per (topic, partition), as ``(offset, time)`` in offset order.
    A record without a valid time (an int >= 0 in ``time_field``) has none. Empty for a context
    that does not keep them."""
    out: dict[tuple[str, int], Ticks] = {}
    for event in getattr(ctx, "passed_over", ()):
        t = event.value.get(time_field)
        if t.__class__ is int and t >= 0:
            out.setdefault((event.topic, event.partition), []).append((event.offset, t, event))
    for times in out.values():
        times.sort(key=lambda x: x[0])
    return out
