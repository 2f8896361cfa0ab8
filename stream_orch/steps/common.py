"""Helpers shared by the built-in steps."""

from __future__ import annotations

from typing import Any

from stream_orch.errors import UserError


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
