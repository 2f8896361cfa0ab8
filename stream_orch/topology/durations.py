"""Durations written as ``500ms``, ``10s``, ``5m``, ``24h`` or ``7d``.

In a topology file a duration needs its unit: a bare number (``gap: 2``) is an error naming the
units it may have meant, ``0`` aside. The loader asks for that by validating with the context
:data:`UNIT_REQUIRED`; models built in Python (no context) also take an integer of milliseconds,
which is how the code builds them. Serialized to JSON a duration is a string with its unit, so a
dumped topology loads again.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, ValidationInfo, WithJsonSchema
from pydantic_core import PydanticCustomError

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
DURATION_PATTERN = r"^\d+(\.\d+)?(ms|s|m|h|d)$"  # the JSON Schema's form (docs find durations by it)
_PATTERN = re.compile(r"^\s*(-?)\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_BARE = re.compile(r"^\s*-?\d+(?:\.\d+)?\s*$")

#: Validation context under which a bare number is refused (the loader passes it).
UNIT_REQUIRED = {"durations": "unit required"}


def _unit_required(info: ValidationInfo | None) -> bool:
    context = info.context if info is not None else None
    return isinstance(context, dict) and context.get("durations") == UNIT_REQUIRED["durations"]


def _bare_number(value: int | float | str) -> PydanticCustomError:
    text = str(value).strip()
    number = text.lstrip("-")
    if text.startswith("-"):
        return PydanticCustomError(
            "duration_negative",
            "a duration cannot be negative: `{value}`",
            {"value": text, "hint": f"write a duration of 0 or more, such as `{number}s`"},
        )
    if float(number) >= 100 and float(number) == int(float(number)):  # likely milliseconds
        same = format_duration_ms(int(float(number)))
        hint = f"did you mean `{number}ms`" + (f" (`{same}`)?" if not same.endswith("ms") else "?")
    else:
        hint = f"did you mean `{number}s`, `{number}m` or `{number}h`? (`{number}ms` for milliseconds)"
    return PydanticCustomError(
        "duration_unit",
        "`{value}` has no unit: a duration needs one of ms, s, m, h, d",
        {"value": text, "hint": hint},
    )


def parse_duration_ms(value: object, info: ValidationInfo | None = None) -> int:
    """Milliseconds of ``value``: a string with a unit, or (unless ``info`` has the context
    :data:`UNIT_REQUIRED`) an int of milliseconds."""
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is not a duration: write a number with ms, s, m, h or d")
    if isinstance(value, int | float):
        if value < 0:
            raise _bare_number(value)
        if _unit_required(info) and value != 0:
            raise _bare_number(value)
        return int(value)
    if isinstance(value, str):
        match = _PATTERN.match(value)
        if match:
            if match.group(1):
                raise PydanticCustomError(
                    "duration_negative",
                    "a duration cannot be negative: `{value}`",
                    {"value": value.strip(), "hint": f"write `{value.strip().lstrip('-').strip()}`"},
                )
            return int(float(match.group(2)) * _UNITS_MS[match.group(3)])
        if _BARE.match(value):
            if float(value) == 0:
                return 0
            raise _bare_number(value)
    raise ValueError(f"{value!r} is not a duration: use a number with ms, s, m, h or d, such as '10s'")


def _validate(value: object, info: ValidationInfo) -> int:
    return parse_duration_ms(value, info)


def format_duration_ms(ms: int) -> str:
    """``ms`` with the largest unit that divides it (``60000`` -> ``1m``, ``1500`` -> ``1500ms``)."""
    if ms == 0:
        return "0s"
    for unit in ("d", "h", "m", "s"):
        if ms % _UNITS_MS[unit] == 0:
            return f"{ms // _UNITS_MS[unit]}{unit}"
    return f"{ms}ms"


DurationMs = Annotated[
    int,
    BeforeValidator(_validate),
    PlainSerializer(format_duration_ms, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": DURATION_PATTERN},
                {"const": 0},
            ]
        }
    ),
]
