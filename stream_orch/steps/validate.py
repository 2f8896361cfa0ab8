"""``validate``: check each record against an Avro schema from ``schemas/``.

The schema is the one named in the step, else the schema of the node's input topic. A record
that does not follow it goes to ``ctx.reject`` with
``schema_violation: field 'amount': expected double, got str '12x'``. The check is the
generated :class:`~stream_orch.codecs.validation.Validator` (about 1 µs per record).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stream_orch.steps.base import Event, StepContext


class ValidateStepImpl:
    def __init__(
        self, check: Callable[[Any], str | None], *, schema_name: str, name: str = "validate"
    ) -> None:
        self.name = name
        self.schema_name = schema_name
        self._check = check

    async def run(self, events: list[Event], ctx: StepContext) -> list[Event]:
        check = self._check
        out: list[Event] = []
        append = out.append
        for event in events:
            problem = check(event.value)
            if problem is None:
                append(event)
            else:
                ctx.reject(event, f"schema_violation: {problem}")
        return out
