"""Property-based fuzzing of the expression compiler (issue 19): random expressions within the
grammar, on random records, either fail to compile with :class:`ExpressionError`, or evaluate to
a value, or fail with :class:`EvaluationError` (the record's ``expression_error``), never with
another exception, and each evaluation returns within a safety bound (a bound against stalls,
not a performance goal). The budget is fixed (300 examples, derandomized) so CI runs the same
cases every time."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_orch.expressions import FUNCTIONS, EvaluationError, ExpressionError, compile_expression

BOUND_S = 1.0  # per evaluation: the worker's batch must not stall on one record

CONSTANTS = {"rates": {"EUR": 1.0, "USD": 0.92}, "limit": 1000, "huge": 10**300, "word": "high"}
FIELDS = ["a", "b", "s", "xs", "d", "n", "missing"]


class Deep(list):
    """A list nested ``levels`` deep (beyond Python's recursion limit), with a short repr for
    Hypothesis' reports."""

    def __init__(self, levels: int) -> None:
        value: list = []
        for _ in range(levels - 1):
            value = [value]
        super().__init__([value])
        self.levels = levels

    def __repr__(self) -> str:
        return f"Deep({self.levels})"


# values a record can carry (JSON or Avro decoded), including the extremes: big and non-finite
# numbers (Avro doubles), strings and lists near the bounds, nesting deeper than the recursion
# limit
EXTREMES = [
    2**63 - 1,
    -(2**63),
    10**4000,
    1e308,
    -1e-308,
    float("inf"),
    float("nan"),
    "x" * 600_000,
    [0] * 600_000,
    "%0999999999d",
    "1e999",
    "nan",
    "9" * 5000,
    Deep(5000),
    10**8,
    10**12,
    -(10**6),
]
extremes = st.sampled_from(range(len(EXTREMES))).map(EXTREMES.__getitem__)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    extremes,
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(["k", "a", "EUR"]), inner, max_size=3),
    max_leaves=8,
)
records = st.dictionaries(st.sampled_from(FIELDS), extremes | values, max_size=len(FIELDS))

# ------------------------------------------------------------------ expressions in the grammar

literals = st.one_of(
    st.integers(min_value=-(10**6), max_value=10**6).map(str),
    st.sampled_from(["0", "1", "2", "10", "1000", "10**1000", "9" * 400, "2**62"]),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["1e308", "1e-308", "1e999", "0.5", "-0.0"]),
    st.text(alphabet="abc %d0", max_size=8).map(repr),
    st.sampled_from(["True", "False", "None", "'a' * 1000"]),
)
names = st.sampled_from(FIELDS + list(CONSTANTS))
leaves = st.one_of(
    literals,
    names,
    names.map(lambda n: f"{n}.k"),
    st.tuples(names, literals).map(lambda t: f"{t[0]}[{t[1]}]"),
)
BINARY = ["+", "-", "*", "/", "//", "%", "**", "and", "or"]
COMPARE = ["==", "!=", "<", "<=", ">", ">=", "in", "not in"]


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pairs = st.tuples(inner, inner)
    return st.one_of(
        st.tuples(inner, st.sampled_from(BINARY), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(inner, st.sampled_from(COMPARE), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(inner, st.sampled_from(["is None", "is not None"])).map(lambda t: f"({t[0]} {t[1]})"),
        st.tuples(st.sampled_from(["-", "+", "not "]), inner).map(lambda t: f"({t[0]}{t[1]})"),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        st.tuples(st.sampled_from(sorted(FUNCTIONS)), st.lists(inner, max_size=3)).map(
            lambda t: f"{t[0]}({', '.join(t[1])})"
        ),
        st.lists(inner, max_size=3).map(lambda xs: f"[{', '.join(xs)}]"),
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: f"({', '.join(xs)},)"),
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: "{" + ", ".join(xs) + "}"),
        pairs.map(lambda t: "{" + f"{t[0]}: {t[1]}" + "}"),
        pairs.map(lambda t: f"{t[0]}[{t[1]}]"),
    )


# shapes that made one record stall a worker or escape as another exception before the bounds
# (issue 19, item 7), filled with field names and literals: the random records bring the extremes
SHAPES = [
    "(({0}) ** ({1})) ** ({2})",
    "({0}) * ({1})",
    "({0}) * ({1}) * ({2})",
    "({0}) + ({1})",
    "({0}) % ({1})",
    "round({0}, {1})",
    "str({0})",
    "({0}) == ({1})",
    "({0}) in ({1})",
    "int({0}) * float({1})",
]
shaped = st.tuples(st.sampled_from(SHAPES), st.lists(leaves, min_size=3, max_size=3)).map(
    lambda t: t[0].format(*t[1])
)
expressions = st.recursive(leaves, _extend, max_leaves=12) | shaped


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(source=expressions, record=records)
def test_random_expressions_compile_or_evaluate_or_fail_as_an_expression_error(
    source: str, record: dict
) -> None:
    try:
        expr = compile_expression(source, constants=CONSTANTS)
    except EvaluationError as exc:  # compiling never evaluates anything
        raise AssertionError(f"compiling {source!r} raised an evaluation error: {exc}") from exc
    except ExpressionError:
        return  # refused with the compiler's own error (e.g. 1e999, '%d' % x, a bad call)
    start = time.perf_counter()
    try:
        expr.fn(record)
    except EvaluationError as exc:
        assert str(exc)  # names what went wrong
    elapsed = time.perf_counter() - start
    assert elapsed < BOUND_S, f"{source!r} took {elapsed:.2f} s"
