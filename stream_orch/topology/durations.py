"""Durations written as ``500ms``, ``10s``, ``5m``, ``24h``, ``7d`` or a number of milliseconds."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, WithJsonSchema

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")


def parse_duration_ms(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError("a duration is a number of milliseconds or a string like '10s'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return int(value)
    if isinstance(value, str):
        match = _PATTERN.match(value)
        if match:
            return int(float(match.group(1)) * _UNITS_MS[match.group(2)])
    raise ValueError(f"{value!r} is not a duration: use a number with ms, s, m, h or d, such as '10s'")


DurationMs = Annotated[
    int,
    BeforeValidator(parse_duration_ms),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "description": "milliseconds"},
                {"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|m|h|d)$"},
            ]
        }
    ),
]
