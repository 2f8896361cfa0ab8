"""What a ``window`` computes per window: one function (``as``) or several named ones (``aggregate``).

A window's record keeps ``n`` (the records it holds) and ``a``, the accumulator: for the ``as``
form the function's accumulator itself (the layout the step has always written, so state written
before ``aggregate`` existed is still read), for ``aggregate`` a list of accumulators in the order
the names are listed. Accumulators by function, each bounded so no record grows with a key's rate:

- count: none (``n`` counts);
- sum, avg: the running sum; min, max: the value so far;
- first, last, latest: ``[time, value]`` (the time decides; ties: first keeps the earlier
  arrival, last and latest the later one);
- collect: the values in arrival order, at most :data:`COLLECT_MAX` (later ones are counted in
  ``n`` but not kept);
- count_distinct: ``{identity: 1}`` per distinct value (a string is ``s:<text>``, anything else
  ``j:<its JSON>``, so ``"1"`` and ``1`` stay distinct), at most :data:`DISTINCT_MAX` values
  (beyond that the result stays :data:`DISTINCT_MAX`).

Two sessions merge accumulator by accumulator (``x`` the earlier session): sums add, min/max
compare, first/last take the earlier/later time (ties: ``x``'s first, ``y``'s last), collect
lists ``x``'s values then ``y``'s, count_distinct is the union.
"""

from __future__ import annotations

from typing import Any

import orjson

from stream_orch.steps.common import show

COLLECT_MAX = 1000
# A sum is stored in the changelog as JSON, which (orjson) holds integers within 64 bits only: an
# integer sum beyond them would fail the batch's changelog write, and so the batch again and
# again. Past the range the sum goes on as a float, as an Avro double would carry it anyway.
INT64_MAX = 2**63 - 1
DISTINCT_MAX = 10_000
FUNCTIONS = ("count", "sum", "min", "max", "avg", "latest", "collect", "first", "last", "count_distinct")
NUMERIC = ("sum", "min", "max", "avg")

Session = list[Any]  # [start, end, n, acc]


def empty(function: str) -> Any:
    if function in ("sum", "avg"):
        return 0
    if function == "collect":
        return []
    return {} if function == "count_distinct" else None


def step(function: str, a: Any, value: Any, t: int) -> Any:
    """The accumulator after one more value (lists and dicts are changed in place)."""
    if function in ("sum", "avg"):
        return _sum(a + value)
    if function == "min":
        return value if a is None or value < a else a
    if function == "max":
        return value if a is None or value > a else a
    if function in ("latest", "last"):
        return [t, value] if a is None or t >= a[0] else a
    if function == "first":
        return [t, value] if a is None or t < a[0] else a
    if function == "collect":
        if len(a) < COLLECT_MAX:
            a.append(value)
        return a
    if function == "count_distinct":
        if len(a) < DISTINCT_MAX:
            a[_identity(value)] = 1
        return a
    return a  # count


def _sum(s: Any) -> Any:
    return float(s) if s.__class__ is int and not -INT64_MAX - 1 <= s <= INT64_MAX else s


def combine(function: str, a: Any, b: Any) -> Any:
    """The accumulator of two sessions, ``a`` the earlier one's."""
    if function in ("sum", "avg"):
        return _sum(a + b)
    if function in ("min", "max"):
        if a is None or b is None:
            return b if a is None else a
        return min(a, b) if function == "min" else max(a, b)
    if function in ("latest", "last"):
        return b if a is None or (b is not None and b[0] >= a[0]) else a
    if function == "first":
        return b if a is None or (b is not None and b[0] < a[0]) else a
    if function == "collect":
        return (a + b)[:COLLECT_MAX]
    if function == "count_distinct":
        merged = dict(a)
        for k in b:
            if len(merged) >= DISTINCT_MAX:
                break
            merged[k] = 1
        return merged
    return None  # count


def value_of(function: str, n: int, a: Any) -> Any:
    if function == "count":
        return n
    if function == "avg":
        return a / n if n else None
    if function in ("latest", "last", "first"):
        return a[1] if a is not None else None
    if function == "collect":
        return list(a)  # a copy: later records append to the window's
    if function == "count_distinct":
        return len(a)
    return a


def copy(acc: Any) -> Any:
    """A copy to change, of an accumulator (or list of them) read from the table."""
    cls = acc.__class__
    if cls is list:
        return [copy(x) if x.__class__ is list or x.__class__ is dict else x for x in acc]
    return dict(acc) if cls is dict else acc


def _identity(value: Any) -> str:
    return "s:" + value if value.__class__ is str else "j:" + orjson.dumps(value).decode()


class Aggregations:
    """The functions of one window step: ``specs`` is ``[(name, function, field)]``; ``single``
    is the ``as`` form (one spec, its accumulator stored bare)."""

    __slots__ = ("add", "fields", "functions", "names", "single", "specs")

    def __init__(self, specs: list[tuple[str, str, str | None]], single: bool) -> None:
        for name, function, field in specs:
            if function not in FUNCTIONS:
                raise ValueError(f"unknown window function {function!r}")
            if function != "count" and not field:
                raise ValueError(f"window function {function!r} needs a field ({name})")
        if single and len(specs) != 1:
            raise ValueError("the `as` form computes one function")
        self.specs = specs
        self.single = single
        self.names = [s[0] for s in specs]
        self.functions = [s[1] for s in specs]
        self.fields = [s[2] for s in specs]
        # add(win, value, t): one record into a window; `value` is the record's value (the list of
        # them, one per function, for several). Chosen once: it runs for every record and window.
        if not single:
            self.add = self._add_many
        elif self.functions[0] == "count":
            self.add = self._add_count
        else:
            self.add = self._add_one

    def empty(self) -> Any:
        if self.single:
            return empty(self.functions[0])
        return [empty(f) for f in self.functions]

    @staticmethod
    def _add_count(win: dict[str, Any], value: Any, t: int) -> None:
        win["n"] += 1

    def _add_one(self, win: dict[str, Any], value: Any, t: int) -> None:
        win["n"] += 1
        win["a"] = step(self.functions[0], win["a"], value, t)

    def _add_many(self, win: dict[str, Any], value: list[Any], t: int) -> None:
        win["n"] += 1
        a = win["a"]
        for i, function in enumerate(self.functions):
            if function != "count":
                a[i] = step(function, a[i], value[i], t)

    def merge(self, x: Session, y: Session) -> Session:
        """Two sessions as one (``x`` the earlier)."""
        if self.single:
            acc = combine(self.functions[0], x[3], y[3])
        else:
            acc = [combine(f, a, b) for f, a, b in zip(self.functions, x[3], y[3], strict=True)]
        return [min(x[0], y[0]), max(x[1], y[1]), x[2] + y[2], acc]

    def values(self, record: dict[str, Any], verb: str) -> list[Any] | str:
        """The record's value for each function (None for count), or why it is rejected: a field
        missing, or not a number for sum/min/max/avg (``verb``: what the step does, for the reason)."""
        values: list[Any] = []
        for function, field in zip(self.functions, self.fields, strict=True):
            if field is None:
                values.append(None)
                continue
            value = record.get(field)
            if value is None:
                return f"missing_field: {field} is required to {verb}"
            if function in NUMERIC and value.__class__ is not int and value.__class__ is not float:
                return f"invalid_field: {field} must be a number (got {show(value)})"
            values.append(value)
        return values

    def over(self, entries: list[list[Any]]) -> dict[str, Any]:
        """The results over ``entries``, ``[time, values, ...]`` in time order (a sliding window's;
        an entry whose value is no list, kept by the step's `as` form before, is left out)."""
        win = {"n": 0, "a": self.empty()}
        for entry in entries:
            if entry[1].__class__ is list:
                self.add(win, entry[1], entry[0])
        return self.results(win)

    def results(self, win: dict[str, Any]) -> dict[str, Any]:
        n, a = win["n"], win["a"]
        if self.single:
            return {self.names[0]: value_of(self.functions[0], n, a)}
        return {name: value_of(f, n, acc) for name, f, acc in zip(self.names, self.functions, a, strict=True)}
