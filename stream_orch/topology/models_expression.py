"""The type of an expression in a topology (a string checked and compiled by
:mod:`stream_orch.expressions`), shared by the model modules."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

Expression = Annotated[
    str,
    Field(
        description=(
            "A safe expression over the record's fields and the topology constants, in Python "
            "syntax restricted to literals, field names, arithmetic, comparisons, and/or/not, "
            "`x if c else y`, `in`, `is None`, subscripts and a few functions (min, max, abs, round, "
            "len, lower, upper, coalesce, str, int, float, bool). Comparing with a missing field is "
            "false; arithmetic on one fails the event with `missing field <name>`."
        ),
        min_length=1,
    ),
]
