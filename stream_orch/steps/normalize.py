"""``normalize``: harmonise fields (rule a of the fraud topology).

Each field's rule is compiled once into a list of small operations, applied in this order
(the order of :class:`~stream_orch.topology.models.FieldRule`'s attributes):

1. ``required`` / ``default``: a missing or null value takes ``default`` when one is set
   (the other operations then apply to it), else is an error when ``required`` (the default),
   else the field is left as it is and the rest of its rule is skipped;
2. ``strip`` (strings only), 3. ``case`` (strings only);
4. ``type``: ``string`` (numbers become their text, e.g. ``123`` -> ``'123'``), ``int``
   (integral numbers and numeric strings), ``float`` (numbers and numeric strings; NaN and
   infinities are rejected), ``bool`` (``true/false/yes/no/1/0`` strings, 0 and 1);
5. ``id``: the one run of digits of ``123``, ``'123'``, ``'C123'``, ``'C-000123'`` rendered as
   ``prefix`` + the number zero-padded to ``digits``. Text before the digits must be empty or
   the prefix (case and ``-``/``_``/space separators ignored), there must be no text after
   them, and the number must fit in ``digits``;
6. ``timestamp: epoch_ms``: an int or float is epoch milliseconds, or epoch *seconds* when its
   absolute value is below 1e11 (before 1973-03-03 in ms); a numeric string likewise; any other
   string is ISO-8601 read by :func:`datetime.fromisoformat` (``Z`` accepted) and **must carry
   an offset** (a naive time is rejected: its zone is unknown). The result is an int of epoch
   ms UTC in [0, 1e14); a ``bool`` is rejected;
7. ``one_of``; 8. ``gt``/``ge``/``lt``/``le`` (the value must be a number);
9. ``pattern`` (the string must match fully).

A failing record goes to ``ctx.reject`` with ``missing_field: <name> is required`` or
``invalid_field: <name> <why> (got <value>)``. Records are changed in place.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from stream_orch.codecs.validation import Settled
from stream_orch.steps.base import Event, StepContext
from stream_orch.steps.common import Invalid, StepBuild, StepConfigError, show
from stream_orch.topology.models import FieldRule, NormalizeStep

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_SECONDS_BELOW = 1e11
_MAX_MS = 10**14
_NUMERIC = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_ONE_DIGIT_RUN = re.compile(r"(\D*?)(\d+)(\D*)")
_SEPARATORS = re.compile(r"[\s_-]+")
_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}

Op = Callable[[Any], Any]


class _Field:
    __slots__ = ("default", "has_default", "name", "ops", "required", "rule")

    def __init__(self, name: str, rule: FieldRule) -> None:
        self.name = name
        self.rule = rule
        self.required = rule.required
        self.has_default = "default" in rule.model_fields_set and rule.default is not None
        self.default = rule.default
        self.ops: tuple[Op, ...] = tuple(_compile_ops(name, rule))


class NormalizeStepImpl:
    """Built from a :class:`NormalizeStep`; see the module docstring for the semantics."""

    @classmethod
    def from_spec(cls, spec: NormalizeStep, build: StepBuild) -> NormalizeStepImpl:
        return cls(spec, name=build.name)

    def __init__(self, spec: NormalizeStep, *, name: str = "normalize") -> None:
        self.name = name
        self.spec = spec
        self._fields = tuple(_Field(n, r) for n, r in spec.fields.items())
        self._normalize = _fuse(self._fields)

    def settled(self) -> dict[str, Settled]:
        """What each field this step always sets holds after it, for a ``validate`` step right
        after it (:meth:`~stream_orch.codecs.validation.Validator.without`)."""
        return {f.name: known for f in self._fields if (known := _settled(f)) is not None}

    def normalize(self, record: dict[str, Any]) -> None:
        """Harmonise one record in place; raises :class:`Invalid` with the reason."""
        self._normalize(record)

    async def run(self, events: list[Event], ctx: StepContext) -> list[Event]:
        out: list[Event] = []
        append = out.append
        normalize = self._normalize
        for event in events:
            try:
                normalize(event.value)
            except Invalid as exc:
                ctx.reject(event, str(exc))
                continue
            except Exception as exc:  # a bug in a rule must not fail the batch
                ctx.reject(event, f"normalize_error: {type(exc).__name__}: {exc}", exc)
                continue
            append(event)
        return out


def _fuse(fields: tuple[_Field, ...]) -> Callable[[dict[str, Any]], None]:
    """All fields' rules as one generated function, in field order.

    Looping over the fields and their operations cost about a third of the step (attribute
    loads, the inner loop, a call per strip/upper/lower); the generated code does the same
    steps with the operations as globals and strip/upper/lower inline. Field names and
    messages enter the source only through ``repr``; nothing from the spec is executed."""
    inline = {_strip: "strip", _upper: "upper", _lower: "lower"}
    # an operation with a fast test (see _fast) is called only for a value that fails the test
    namespace: dict[str, Any] = {"__builtins__": {}, "_copy": copy.copy, "_Invalid": Invalid}
    namespace.update(str=str, int=int, float=float)  # the fast tests compare classes
    lines = ["def normalize(r):"]
    for i, f in enumerate(fields):
        ops: list[str] = []
        for j, op in enumerate(f.ops):
            method = inline.get(op)
            if method is not None:
                ops.append(f"v = v.{method}() if v.__class__ is str else v")
            else:
                namespace[f"_op{i}_{j}"] = op
                fast = getattr(op, "fast", None)
                if fast is None:
                    ops.append(f"v = _op{i}_{j}(v)")
                else:
                    test, value = fast
                    namespace[f"_fast{i}_{j}"] = value
                    ops.append(f"if not ({test.format(f'_fast{i}_{j}')}): v = _op{i}_{j}(v)")
        ops.append(f"r[{f.name!r}] = v")
        lines.append(f"    v = r.get({f.name!r})")
        if f.has_default:
            namespace[f"_default{i}"] = f.default
            lines += ["    if v is None:", f"        v = _copy(_default{i})"]
            lines += [f"    {op}" for op in ops]
        elif f.required:
            message = f"missing_field: {f.name} is required"
            lines += ["    if v is None:", f"        raise _Invalid({message!r})"]
            lines += [f"    {op}" for op in ops]
        else:  # a missing optional field is left as it is
            lines.append("    if v is not None:")
            lines += [f"        {op}" for op in ops]
    lines.append("    return None")
    exec(compile("\n".join(lines) + "\n", "<normalize>", "exec"), namespace)
    return namespace["normalize"]


def _settled(field: _Field) -> Settled | None:
    """What a record that passed holds in ``field``: each operation either returns a value of
    its own class or fails the record (see the module docstring; a value is exactly of the class
    named, never a subclass). None for a field the rule may leave missing."""
    if not (field.has_default or field.required):
        return None
    rule = field.rule
    classes: frozenset[type] | None = None  # None: any class
    low = high = among = None
    if rule.type is not None:
        classes = frozenset({_TYPE_CLASSES[rule.type]})
    if rule.id_format is not None:
        classes = frozenset({str})
    if rule.timestamp is not None:
        classes, low, high = frozenset({int}), 0, _MAX_MS - 1
    if rule.one_of is not None:
        try:
            among = frozenset(rule.one_of)
        except TypeError:
            among = None
        if classes is not None:  # an equal value of another class (1.0 for 1) passes one_of
            classes &= {a.__class__ for a in rule.one_of}
    if any(b is not None for b in (rule.gt, rule.ge, rule.lt, rule.le)):
        classes = (classes if classes is not None else _NUMBER_CLASSES) & _NUMBER_CLASSES
    if rule.pattern is not None:
        classes = (classes if classes is not None else _STR_CLASS) & _STR_CLASS
    if classes is None:
        return None
    return Settled(classes, among, low, high)


_TYPE_CLASSES: dict[str, type] = {"string": str, "int": int, "float": float, "bool": bool}
_NUMBER_CLASSES = frozenset({int, float})
_STR_CLASS = frozenset({str})


# --------------------------------------------------------------------------- operations


def _fast(op: Op, test: str, value: Any = None) -> Op:
    """Give ``op`` a test for the generated code (over ``v``; ``{}`` names ``value``): a value
    that passes it is one ``op`` would return as it is, so the call is left out. About half the
    step was these calls, nearly all of them for values already in their form."""
    op.fast = (test, value)  # type: ignore[attr-defined]
    return op


class _Matches(set[str]):
    """The strings a regular expression's full match accepted, for a fast test: a string seen
    before is one set lookup (about 10 ns with its hash cached, 30 without) instead of the match
    (about 90 ns), and the values of an id or a country field come back all the time. Holds at
    most ``_MATCHES_KEPT`` (then starts over); a string that does not match is not kept."""

    __slots__ = ("_fullmatch",)

    def __init__(self, fullmatch: Callable[[str], Any]) -> None:
        super().__init__()
        self._fullmatch = fullmatch

    def check(self, value: str) -> bool:
        """Whether ``value`` matches (the test's second half, for a string not kept yet)."""
        if self._fullmatch(value) is None:
            return False
        if len(self) >= _MATCHES_KEPT:
            self.clear()
        self.add(value)
        return True


_MATCHES_KEPT = 32_768
_MATCHES_TEST = "v.__class__ is str and (v in {0} or {0}.check(v))"


def _compile_ops(name: str, rule: FieldRule) -> list[Op]:
    ops: list[Op] = []
    if rule.strip:
        ops.append(_strip)
    if rule.case == "upper":
        ops.append(_upper)
    elif rule.case == "lower":
        ops.append(_lower)
    if rule.type is not None:
        ops.append(_TYPE_OPS[rule.type](name))
    if rule.id_format is not None:
        ops.append(_id_op(name, rule.id_format.prefix, rule.id_format.digits))
    if rule.timestamp is not None:
        ops.append(_timestamp_op(name))
    if rule.one_of is not None:
        ops.append(_one_of_op(name, rule.one_of))
    for attr, symbol, test in (
        ("gt", ">", lambda v, b: v > b),
        ("ge", ">=", lambda v, b: v >= b),
        ("lt", "<", lambda v, b: v < b),
        ("le", "<=", lambda v, b: v <= b),
    ):
        bound = getattr(rule, attr)
        if bound is not None:
            ops.append(_bound_op(name, symbol, bound, test))
    if rule.pattern is not None:
        ops.append(_pattern_op(name, rule.pattern))
    return ops


def _strip(value: Any) -> Any:
    return value.strip() if value.__class__ is str else value


def _upper(value: Any) -> Any:
    return value.upper() if value.__class__ is str else value


def _lower(value: Any) -> Any:
    return value.lower() if value.__class__ is str else value


def _to_string(name: str) -> Op:
    def op(value: Any) -> str:
        cls = value.__class__
        if cls is str:
            return value
        if cls is int:
            return str(value)
        if cls is float:
            return str(int(value)) if value.is_integer() else repr(value)
        raise Invalid(f"invalid_field: {name} must be a string (got {show(value)})")

    return _fast(op, "v.__class__ is str")


def _parse_number(name: str, value: Any) -> int | float:
    """An int or float from a number or a numeric string; raises Invalid otherwise."""
    cls = value.__class__
    if cls is int or cls is float:
        number = value
    elif cls is str:
        text = value.strip()
        if not _NUMERIC.fullmatch(text):
            raise Invalid(f"invalid_field: {name} is not a number (got {show(value)})")
        number = int(text) if text.lstrip("+-").isdigit() else float(text)
    else:
        raise Invalid(f"invalid_field: {name} must be a number (got {show(value)})")
    if number.__class__ is float and not math.isfinite(number):
        raise Invalid(f"invalid_field: {name} must be a finite number (got {show(value)})")
    return number


def _to_int(name: str) -> Op:
    def op(value: Any) -> int:
        if value.__class__ is int:
            return value
        number = _parse_number(name, value)
        if number.__class__ is float:
            if not number.is_integer():
                raise Invalid(f"invalid_field: {name} must be an integer (got {show(value)})")
            return int(number)
        return number

    return _fast(op, "v.__class__ is int")


def _to_float(name: str) -> Op:
    def op(value: Any) -> float:
        if value.__class__ is float:
            if math.isfinite(value):
                return value
            raise Invalid(f"invalid_field: {name} must be a finite number (got {show(value)})")
        return float(_parse_number(name, value))

    return _fast(op, "v.__class__ is float and v - v == 0.0")  # finite: inf - inf and nan are nan


def _to_bool(name: str) -> Op:
    def op(value: Any) -> bool:
        if value.__class__ is bool:
            return value
        if value.__class__ is int and value in (0, 1):
            return bool(value)
        if value.__class__ is str:
            text = value.strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
        raise Invalid(f"invalid_field: {name} must be a boolean (got {show(value)})")

    return op


_TYPE_OPS: dict[str, Callable[[str], Op]] = {
    "string": _to_string,
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
}


def _id_op(name: str, prefix: str, digits: int) -> Op:
    core = _SEPARATORS.sub("", prefix).upper()
    limit = 10**digits
    at = len(prefix)
    canonical = at + digits

    def op(value: Any) -> str:
        cls = value.__class__
        if cls is str and len(value) == canonical and value.startswith(prefix):
            tail = value[at:]
            if tail.isascii() and tail.isdigit():
                return value  # already prefix + `digits` ASCII digits: what the rule would render
        if cls is int:
            number = value
        elif cls is float and value.is_integer():
            number = int(value)
        elif cls is str:
            if value.startswith(prefix) and value[len(prefix) :].isdigit():
                number = int(value[len(prefix) :])  # the canonical form, the common case
            else:
                match = _ONE_DIGIT_RUN.fullmatch(value.strip())
                if match is None:
                    raise Invalid(
                        f"invalid_field: {name} must be a number with an optional {prefix!r} prefix "
                        f"(got {show(value)})"
                    )
                lead, run, trail = match.groups()
                lead = _SEPARATORS.sub("", lead).upper()
                if trail or (lead and lead != core):
                    raise Invalid(
                        f"invalid_field: {name} must be a number with an optional {prefix!r} prefix "
                        f"(got {show(value)})"
                    )
                number = int(run)
        else:
            raise Invalid(f"invalid_field: {name} must be an identifier (got {show(value)})")
        if number < 0 or number >= limit:
            raise Invalid(
                f"invalid_field: {name} must be a number of at most {digits} digits (got {show(value)})"
            )
        return f"{prefix}{number:0{digits}d}"

    # the canonical form (op's first test, remembered per value: _Matches): 0.09 against 0.16 us
    # for calling op
    canonical_form = re.compile(re.escape(prefix) + f"[0-9]{{{digits}}}").fullmatch
    return _fast(op, _MATCHES_TEST, _Matches(canonical_form))


def _timestamp_op(name: str) -> Op:
    def from_number(number: int | float, original: Any) -> int:
        if -_SECONDS_BELOW < number < _SECONDS_BELOW:
            number = number * 1000
        ms = round(number)
        if not 0 <= ms < _MAX_MS:
            raise Invalid(f"invalid_field: {name} is out of range for a timestamp (got {show(original)})")
        return ms

    def op(value: Any) -> int:
        cls = value.__class__
        if cls is int:
            if _SECONDS_BELOW <= value < _MAX_MS:
                return value  # epoch ms, the common case
            return from_number(value, value)
        if cls is float:
            if not math.isfinite(value):
                raise Invalid(f"invalid_field: {name} is not a timestamp (got {show(value)})")
            return from_number(value, value)
        if cls is not str:
            raise Invalid(f"invalid_field: {name} is not a timestamp (got {show(value)})")
        text = value.strip()
        if _NUMERIC.fullmatch(text):
            return from_number(int(text) if text.lstrip("+-").isdigit() else float(text), value)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise Invalid(
                f"invalid_field: {name} is not epoch ms, epoch s or ISO-8601 (got {show(value)})"
            ) from None
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise Invalid(f"invalid_field: {name} has no UTC offset (got {show(value)})")
        ms = (moment - _EPOCH) // _MS
        if not 0 <= ms < _MAX_MS:
            raise Invalid(f"invalid_field: {name} is out of range for a timestamp (got {show(value)})")
        return ms

    return _fast(op, f"v.__class__ is int and {int(_SECONDS_BELOW)} <= v < {_MAX_MS}")


def _one_of_op(name: str, allowed: list[Any]) -> Op:
    try:
        allowed_set: Any = frozenset(allowed)
    except TypeError:
        allowed_set = list(allowed)
    listing = ", ".join(str(a) for a in allowed)
    bools_allowed = any(a.__class__ is bool for a in allowed)

    def op(value: Any) -> Any:
        try:
            ok = value in allowed_set and (bools_allowed or value.__class__ is not bool)
        except TypeError:
            ok = False
        if ok:
            return value
        raise Invalid(f"invalid_field: {name} must be one of {listing} (got {show(value)})")

    return _fast(op, "v.__class__ is str and v in {}", allowed_set)


def _bound_op(name: str, symbol: str, bound: float, test: Callable[[Any, float], bool]) -> Op:
    shown = int(bound) if float(bound).is_integer() else bound

    def op(value: Any) -> Any:
        cls = value.__class__
        if cls is not int and cls is not float:
            raise Invalid(f"invalid_field: {name} must be a number {symbol} {shown} (got {show(value)})")
        if test(value, bound):
            return value
        raise Invalid(f"invalid_field: {name} must be {symbol} {shown} (got {show(value)})")

    return _fast(op, f"(v.__class__ is float or v.__class__ is int) and v {symbol} {{}}", bound)


def _pattern_op(name: str, pattern: str) -> Op:
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise StepConfigError(f"normalize: field {name}: invalid pattern {pattern!r}: {exc}") from None
    fullmatch = regex.fullmatch

    def op(value: Any) -> Any:
        if value.__class__ is str and fullmatch(value):
            return value
        raise Invalid(f"invalid_field: {name} must match {pattern!r} (got {show(value)})")

    return _fast(op, _MATCHES_TEST, _Matches(fullmatch))
