"""Operators with bounded results, so that one expression cannot stall a worker.

Python's own operators are not bounded: ``'a' * 10**8`` allocates 100 MB,
``((10**1000)**1000)**10`` computes for 9.5 s, ``round(1, -10**7)`` computes ``10**10**7`` and
``'%0999999999d' % 1`` formats a gigabyte, with record values as the operands. The compiled
code calls these functions where a result can outgrow its operands. Each works out the size
the result would have *before* computing it and raises :class:`EvaluationError` (the record's
``expression_error``) above a bound. Where the operands cannot make a large result (a float on
either side of ``*``, a number on either side of ``+``: the hot path's ``amount * rate``) the
compiled code applies the operator inline instead (``compiler._Compiler.visit_BinOp``).

A list is measured by its *weight*: its items plus the characters of the strings in it, as
``[s] * 1000`` holds one string but ``str()`` of it (or the output encoding) writes it 1,000
times; ``str()`` of a list, tuple, set or dict is bounded the same way. Other operators cannot
grow a result beyond their operands (``-``, ``/``, ``//``, comparisons), and the other functions
are linear in their argument (``len``, ``lower``...); ``int()`` of a string stops at Python's
4,300 digits.
"""

from __future__ import annotations

from typing import Any

from stream_orch.expressions.errors import EvaluationError

__all__ = [
    "MAX_INT_BITS",
    "MAX_LENGTH",
    "MAX_ROUND_DIGITS",
    "add",
    "bounded_round",
    "bounded_str",
    "mod",
    "mul",
    "power",
    "weight",
]

MAX_INT_BITS = 10_000  # about 3,000 digits; no output carries more than 64 bits (JSON, Avro long)
MAX_LENGTH = 1_000_000  # characters, bytes or items: more than an output record (1 MB) can carry
MAX_ROUND_DIGITS = 1_000  # round(int, -n) computes 10**n

_SEQUENCES = (str, bytes, list, tuple)
_CONTAINERS = (list, tuple, set, frozenset, dict)


def weight(value: Any, budget: int = MAX_LENGTH) -> int:
    """Items, characters and bytes in ``value`` (nested), counted until beyond ``budget``."""
    if isinstance(value, str | bytes):
        return len(value)
    if not isinstance(value, _CONTAINERS):
        return 1
    total = len(value)
    for item in value.items() if isinstance(value, dict) else value:
        if total > budget:
            break
        total += weight(item, budget - total)
    return total


def _too_large(op: str, bits: int) -> EvaluationError:
    return EvaluationError(f"the result of {op} is too large: about {bits:,} bits (at most {MAX_INT_BITS:,})")


def _too_long(op: str, size: int) -> EvaluationError:
    return EvaluationError(
        f"the result of {op} is too long: {size:,} characters or items or more (at most {MAX_LENGTH:,})"
    )


def mul(a: Any, b: Any) -> Any:
    """``a * b``: an integer product of at most ``MAX_INT_BITS``, a repetition of at most
    ``MAX_LENGTH`` (``bool`` is an ``int`` here, as in Python)."""
    if isinstance(a, int):
        if isinstance(b, int):
            bits = a.bit_length() + b.bit_length()
            if bits > MAX_INT_BITS:
                raise _too_large("*", bits)
        elif isinstance(b, _SEQUENCES) and a > 0 and weight(b) * a > MAX_LENGTH:
            raise _too_long("*", weight(b) * a)
    elif isinstance(b, int) and isinstance(a, _SEQUENCES) and b > 0 and weight(a) * b > MAX_LENGTH:
        raise _too_long("*", weight(a) * b)
    return a * b


def add(a: Any, b: Any) -> Any:
    """``a + b``: a concatenation of at most ``MAX_LENGTH``."""
    if isinstance(a, _SEQUENCES) and isinstance(b, _SEQUENCES):
        size = weight(a) + weight(b)
        if size > MAX_LENGTH:
            raise _too_long("+", size)
    return a + b


def bounded_str(*args: Any) -> str:
    """``str(x)``: of a list, tuple, set or dict of at most ``MAX_LENGTH`` in weight."""
    if len(args) == 1 and isinstance(args[0], _CONTAINERS):
        size = weight(args[0])
        if size > MAX_LENGTH:
            raise _too_long("str()", size)
    return str(*args)


def mod(a: Any, b: Any) -> Any:
    """``a % b`` of numbers; ``%`` formatting of a string (whose width the string itself sets,
    e.g. ``'%0999999999d'`` from a record) is not part of the language."""
    if isinstance(a, str | bytes):
        raise EvaluationError("% formatting of strings is not allowed; use str(x) and +")
    return a % b


def power(base: Any, exponent: Any) -> Any:
    """``base ** exponent``: an integer power of at most ``MAX_INT_BITS``, and a real number."""
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        bits = base.bit_length()
        if bits > 1 and bits * exponent > MAX_INT_BITS:  # 0, 1 and -1 stay that small
            raise _too_large("**", bits * exponent)
    result = base**exponent
    if result.__class__ is complex:
        raise EvaluationError("a negative number to a fractional power is not a real number")
    return result


def bounded_round(*args: Any) -> Any:
    """``round(x)`` or ``round(x, n)`` with ``|n| <= MAX_ROUND_DIGITS``."""
    if len(args) == 2 and isinstance(args[1], int) and abs(args[1]) > MAX_ROUND_DIGITS:
        raise EvaluationError(f"round() to more than {MAX_ROUND_DIGITS:,} digits is not allowed")
    return round(*args)
