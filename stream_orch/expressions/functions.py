"""What compiled expressions call: field and item access, the raisers of missing values, and
the functions of the language (``FUNCTIONS``); bounded operators are in :mod:`.bounds`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from stream_orch.expressions.bounds import bounded_round, bounded_str
from stream_orch.expressions.errors import EvaluationError

__all__ = ["FUNCTIONS", "field", "item", "missing_raisers"]


def missing_raisers(source: str) -> tuple[Callable[[str], Any], Callable[[str], Any]]:
    """The two raisers a compiled expression calls when an arithmetic operand is None."""

    def missing(name: str) -> Any:
        raise EvaluationError(f"missing field {name}", source, field=name)

    def missing_value(text: str) -> Any:
        raise EvaluationError(f"`{text}` is missing (None)", source)

    return missing, missing_value


def field(obj: Any, name: str) -> Any:
    """``a.b``: a key of a nested record; None when ``a`` is missing."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    if obj is None:
        return None
    raise EvaluationError(f"cannot read .{name} of a {type(obj).__name__} value")


def item(obj: Any, key: Any) -> Any:
    """``x[k]``: mapping key or sequence index; None when absent."""
    if isinstance(obj, Mapping):
        return obj.get(key)
    if obj is None:
        return None
    if isinstance(obj, list | tuple | str) and isinstance(key, int) and not isinstance(key, bool):
        try:
            return obj[key]
        except IndexError:
            return None
    raise EvaluationError(f"cannot index a {type(obj).__name__} value with {key!r}")


def _lower(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value and value.lower()
    raise EvaluationError(f"lower() needs a string, got {type(value).__name__}")


def _upper(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value and value.upper()
    raise EvaluationError(f"upper() needs a string, got {type(value).__name__}")


def _coalesce(*values: Any) -> Any:
    """The first value that is not None (None when all are)."""
    for value in values:
        if value is not None:
            return value
    return None


# name in expressions -> (implementation, whether missing (None) arguments are an error)
FUNCTIONS: dict[str, tuple[Callable[..., Any], bool]] = {
    "min": (min, True),
    "max": (max, True),
    "abs": (abs, True),
    "round": (bounded_round, True),
    "len": (len, True),
    "int": (int, True),
    "float": (float, True),
    "lower": (_lower, False),
    "upper": (_upper, False),
    "coalesce": (_coalesce, False),
    "str": (bounded_str, False),
    "bool": (bool, False),
}
