"""Parse, whitelist-check and compile expressions to one Python function each.

An interpreter walking the AST per event costs 6-18 µs; the same condition compiled once to
Python code costs about 0.4 µs. So each expression is parsed once with :mod:`ast`, every node
is checked against a whitelist, and Python source is generated and compiled into a single
function whose globals hold only the helper functions and the topology constants (no
builtins). Nothing from YAML is ever executed as Python as written.

Semantics (documented in the topology reference):

* A name is a topology constant if one has that name, else a field of the record (``None``
  when missing). ``a.b`` reads field ``b`` of the nested record ``a``; ``x[k]`` reads a key
  of a mapping or an index of a list/string (``None`` when absent).
* Ordering comparisons (``<``, ``<=``, ``>``, ``>=``) with a missing (``None``) side are
  False rather than a ``TypeError``; ``==``/``!=`` compare ``None`` normally; ``x in c`` is
  False when ``c`` is missing and ``x not in c`` is its negation.
* Arithmetic or a numeric function on a missing field raises :class:`EvaluationError`
  ``missing field <name>``; any other type or value error (dividing by zero, comparing a
  string with a number) raises :class:`EvaluationError` naming the expression.
* One expression cannot stall a worker: results that can outgrow their operands (``*``, ``+``,
  ``**``, ``%`` and ``round``) are bounded before they are computed (:mod:`.bounds`), and an
  overflow, a recursion too deep or a ``MemoryError`` is an :class:`EvaluationError` too.
"""

from __future__ import annotations

import ast
import itertools
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from stream_orch.expressions import bounds
from stream_orch.expressions.errors import EvaluationError, ExpressionError
from stream_orch.expressions.functions import FUNCTIONS, field, item, missing_raisers

__all__ = ["FUNCTIONS", "CompiledExpression", "EvaluationError", "ExpressionError", "compile_expression"]

_MAX_SOURCE = 10_000
# the helper globals' numbers, unique in the process, so that the bodies of several expressions
# can share one namespace
_GLOBAL_IDS = itertools.count()


@dataclass(frozen=True, slots=True)
class CompiledExpression:
    """A checked and compiled expression; call ``fn(record)`` per event."""

    source: str
    fn: Callable[[Mapping[str, Any]], Any]
    fields: frozenset[str]
    python: str  # the generated Python source, for debugging
    # the returned expression alone, over the globals of ``fn`` (their names are unique to this
    # expression): a step may inline several into one generated function (score's rules)
    body: str = ""

    def __call__(self, record: Mapping[str, Any]) -> Any:
        return self.fn(record)


_BINOPS: dict[type[ast.operator], str] = {ast.Sub: "-", ast.Div: "/", ast.FloorDiv: "//"}
# operators whose result can outgrow the operands: (symbol, bounded function, inline test);
# the operator is applied inline when either operand passes the test (see bounds)
_BOUNDED: dict[type[ast.operator], tuple[str, str, str]] = {
    ast.Mult: ("*", "_mul", "{}.__class__ is _float"),
    ast.Add: ("+", "_add", "{}.__class__ in _NUMBER"),
}
_ORDERING: dict[type[ast.cmpop], str] = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
_EQUALITY: dict[type[ast.cmpop], str] = {ast.Eq: "==", ast.NotEq: "!="}

_FORBIDDEN_HINTS: dict[type[ast.AST], str] = {
    ast.Lambda: "lambdas are not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "generator expressions are not allowed",
    ast.NamedExpr: "assignment expressions (:=) are not allowed",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
    ast.YieldFrom: "yield is not allowed",
    ast.JoinedStr: "f-strings are not allowed; use str(x) and +",
    ast.Starred: "* unpacking is not allowed",
    ast.Slice: "slices are not allowed; use a single index",
}


# --------------------------------------------------------------------------- compiler


class _Compiler:
    """Checks each node against the whitelist while generating its Python code."""

    def __init__(self, source: str, constants: Mapping[str, Any], line_starts: list[int]) -> None:
        self.source = source
        self.constants = constants
        self.line_starts = line_starts
        self.globals: dict[str, Any] = {}
        self.const_names: dict[str, str] = {}
        self.fields: set[str] = set()
        self.temps = 0

    # -- helpers

    def offset(self, node: ast.AST) -> int:
        lineno = getattr(node, "lineno", 1)
        return self.line_starts[lineno - 1] + getattr(node, "col_offset", 0)

    def fail(self, node: ast.AST, message: str) -> ExpressionError:
        return ExpressionError(message, self.offset(node))

    def temp(self) -> str:
        self.temps += 1
        return f"_t{self.temps}"

    def glob(self, value: Any, prefix: str) -> str:
        name = f"_{prefix}{next(_GLOBAL_IDS)}"
        self.globals[name] = value
        return name

    def text(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.source, node) or ast.unparse(node)

    def is_data(self, node: ast.AST) -> bool:
        """True when the node reads record data (so it can be missing)."""
        if isinstance(node, ast.Name):
            return node.id not in self.constants
        return isinstance(node, ast.Attribute | ast.Subscript)

    def required(self, node: ast.AST) -> str:
        """Code for an operand of arithmetic: a missing value raises ``missing field``."""
        code = self.visit(node)
        if not self.is_data(node):
            return code
        t = self.temp()
        if isinstance(node, ast.Name):
            fail = f"_missing({node.id!r})"
        elif isinstance(node, ast.Attribute) and self.is_dotted(node):
            fail = f"_missing({self.text(node)!r})"
        else:
            fail = f"_missing_value({self.text(node)!r})"
        return f"({t} if ({t} := {code}) is not None else {fail})"

    def is_dotted(self, node: ast.AST) -> bool:
        while isinstance(node, ast.Attribute):
            node = node.value
        return isinstance(node, ast.Name) and node.id not in self.constants

    # -- nodes

    def visit(self, node: ast.AST) -> str:
        method = getattr(self, f"visit_{type(node).__name__}", None)
        if method is None:
            reason = _FORBIDDEN_HINTS.get(
                type(node), f"{type(node).__name__} is not allowed in an expression"
            )
            raise self.fail(node, reason)
        return method(node)

    def visit_Constant(self, node: ast.Constant) -> str:
        if not isinstance(node.value, str | int | float | bool | type(None)):
            raise self.fail(node, f"literal {node.value!r} is not allowed")
        if node.value.__class__ is float and not math.isfinite(node.value):
            # Python reads 1e999 as infinity, whose repr `inf` is no name at run time; and no
            # output can carry it (JSON has no infinity), so the literal is a mistake
            raise self.fail(
                node,
                f"{self.text(node)} is not a finite number: it is beyond the float range (about ±1.8e308)",
            )
        return repr(node.value)

    def visit_Name(self, node: ast.Name) -> str:
        name = node.id
        if name.startswith("__"):
            raise self.fail(node, f"name {name!r} is not allowed (names starting with __ are reserved)")
        if name in self.constants:
            if name not in self.const_names:
                self.const_names[name] = self.glob(self.constants[name], "k")
            return self.const_names[name]
        if name in FUNCTIONS:
            raise self.fail(node, f"{name} is a function: call it, e.g. {name}(x)")
        self.fields.add(name)
        return f"r.get({name!r})"

    def visit_Attribute(self, node: ast.Attribute) -> str:
        if node.attr.startswith("_"):
            raise self.fail(
                node, f"attribute {node.attr!r} is not allowed (names starting with _ are reserved)"
            )
        return f"_field({self.visit(node.value)}, {node.attr!r})"

    def visit_Subscript(self, node: ast.Subscript) -> str:
        value = self.visit(node.value)
        key = self.visit(node.slice)
        if isinstance(node.value, ast.Name) and isinstance(self.constants.get(node.value.id), dict):
            return f"{value}.get({key})"  # a constant mapping such as rates[currency]: one C call
        return f"_item({value}, {key})"

    def visit_BoolOp(self, node: ast.BoolOp) -> str:
        op = " and " if isinstance(node.op, ast.And) else " or "
        return "(" + op.join(self.visit(v) for v in node.values) + ")"

    def visit_UnaryOp(self, node: ast.UnaryOp) -> str:
        if isinstance(node.op, ast.Not):
            return f"(not {self.visit(node.operand)})"
        if isinstance(node.op, ast.USub):
            return f"(-{self.required(node.operand)})"
        if isinstance(node.op, ast.UAdd):
            return f"(+{self.required(node.operand)})"
        raise self.fail(node, "operator ~ is not allowed")

    def visit_BinOp(self, node: ast.BinOp) -> str:
        if isinstance(node.op, ast.Mod) and isinstance(getattr(node.left, "value", None), str):
            raise self.fail(node, "% formatting of strings is not allowed; use str(x) and +")
        left, right = self.required(node.left), self.required(node.right)
        if isinstance(node.op, ast.Pow):
            return f"_pow({left}, {right})"
        if isinstance(node.op, ast.Mod):
            return f"_mod({left}, {right})"
        bounded = _BOUNDED.get(type(node.op))
        if bounded is not None:
            symbol, function, test = bounded
            a, b = self.temp(), self.temp()
            # both operands evaluated, in order (`|`, not `or`), before either path
            fast = f"({test.format(f'({a} := {left})')}) | ({test.format(f'({b} := {right})')})"
            return f"({a} {symbol} {b} if {fast} else {function}({a}, {b}))"
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise self.fail(node, f"operator {type(node.op).__name__} is not allowed; use + - * / // % **")
        return f"({left} {op} {right})"

    def visit_IfExp(self, node: ast.IfExp) -> str:
        return f"({self.visit(node.body)} if {self.visit(node.test)} else {self.visit(node.orelse)})"

    def visit_List(self, node: ast.List) -> str:
        return "[" + ", ".join(self.visit(e) for e in node.elts) + "]"

    def visit_Tuple(self, node: ast.Tuple) -> str:
        return "(" + "".join(self.visit(e) + ", " for e in node.elts) + ")"

    def visit_Set(self, node: ast.Set) -> str:
        return "{" + ", ".join(self.visit(e) for e in node.elts) + "}"

    def visit_Dict(self, node: ast.Dict) -> str:
        parts = []
        for key, value in zip(node.keys, node.values, strict=True):
            if key is None:
                raise self.fail(value, "** unpacking is not allowed")
            parts.append(f"{self.visit(key)}: {self.visit(value)}")
        return "{" + ", ".join(parts) + "}"

    def visit_Call(self, node: ast.Call) -> str:
        if isinstance(node.func, ast.Attribute):
            raise self.fail(
                node,
                f"method calls are not allowed; call a function instead, "
                f"e.g. {node.func.attr}(x) not x.{node.func.attr}()",
            )
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise self.fail(
                node, f"function {name!r} is not allowed; allowed: {', '.join(sorted(FUNCTIONS))}"
            )
        if node.keywords:
            raise self.fail(node.keywords[0], "keyword arguments are not allowed")
        impl, strict = FUNCTIONS[node.func.id]
        if node.func.id == "round" and _small_literal(node.args[1:], bounds.MAX_ROUND_DIGITS):
            impl = round  # round(x, 2): the bound holds already, no wrapper to call
        fn = self.glob(impl, "f")
        args = [self.required(a) if strict else self.visit(a) for a in node.args]
        return f"{fn}({', '.join(args)})"

    def visit_Compare(self, node: ast.Compare) -> str:
        operands = [node.left, *node.comparators]
        ops = node.ops
        for i, op in enumerate(ops):
            if isinstance(op, ast.Is | ast.IsNot) and not any(
                isinstance(o, ast.Constant) and o.value is None for o in operands[i : i + 2]
            ):
                raise self.fail(node, "`is` / `is not` only compare with None; use == for values")

        def may_be_none(o: ast.AST) -> bool:
            if isinstance(o, ast.Constant):
                return o.value is None
            if isinstance(o, ast.Name) and o.id in self.constants:
                return self.constants[o.id] is None
            return not isinstance(o, ast.List | ast.Tuple | ast.Set | ast.Dict)

        # How often each operand is read: by its comparisons and by their None checks.
        checks: list[list[int]] = []
        reads = [0] * len(operands)
        for i, op in enumerate(ops):
            if type(op) in _ORDERING:
                need = [j for j in (i, i + 1) if may_be_none(operands[j])]
            elif isinstance(op, ast.In | ast.NotIn):
                need = [i + 1] if may_be_none(operands[i + 1]) else []
            else:
                need = []
            checks.append(need)
            reads[i] += 1 + need.count(i)
            reads[i + 1] += 1 + need.count(i + 1)

        codes = []
        for i, operand in enumerate(operands):
            if i > 0 and isinstance(ops[i - 1], ast.In | ast.NotIn):
                codes.append(self.container(operand))
            else:
                codes.append(self.visit(operand))
        # An operand read more than once is bound to a temporary where it is first evaluated.
        firsts: list[str] = []
        refs: list[str] = []
        for i, code in enumerate(codes):
            if reads[i] > 1 and not code.isidentifier() and not _is_literal(operands[i]):
                t = self.temp()
                firsts.append(f"({t} := {code})")
                refs.append(t)
            else:
                firsts.append(code)
                refs.append(code)
        done = [False] * len(operands)

        def use(j: int) -> str:
            if done[j]:
                return refs[j]
            done[j] = True
            return firsts[j]

        parts = []
        for i, op in enumerate(ops):
            if isinstance(op, ast.NotIn):
                if checks[i]:
                    container = use(i + 1)
                    parts.append(f"{container} is None or {use(i)} not in {refs[i + 1]}")
                else:
                    parts.append(f"{use(i)} not in {use(i + 1)}")
                continue
            guards = [f"{use(j)} is not None" for j in checks[i]]
            if type(op) in _ORDERING:
                parts.append(" and ".join([*guards, f"{use(i)} {_ORDERING[type(op)]} {use(i + 1)}"]))
            elif isinstance(op, ast.In):
                parts.append(" and ".join([*guards, f"{use(i)} in {use(i + 1)}"]))
            elif type(op) in _EQUALITY:
                parts.append(f"{use(i)} {_EQUALITY[type(op)]} {use(i + 1)}")
            else:
                word = "is" if isinstance(op, ast.Is) else "is not"
                parts.append(f"{use(i)} {word} {use(i + 1)}")
        if len(parts) == 1:
            return f"({parts[0]})"
        return "(" + " and ".join(f"({p})" for p in parts) + ")"

    def container(self, node: ast.AST) -> str:
        """Right side of ``in``: a literal list of literals becomes one frozenset, built once."""
        if isinstance(node, ast.List | ast.Tuple | ast.Set) and all(_is_literal(e) for e in node.elts):
            for element in node.elts:
                self.visit(element)  # checks the literal's type
            return self.glob(frozenset(e.value for e in node.elts), "s")  # type: ignore[attr-defined]
        return self.visit(node)


def _small_literal(nodes: list[ast.expr], bound: int) -> bool:
    """One int literal within ``±bound``."""
    if len(nodes) != 1 or not isinstance(nodes[0], ast.Constant):
        return False
    value = nodes[0].value
    return value.__class__ is int and abs(value) <= bound


def _is_literal(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant)


def _line_starts(source: str) -> list[int]:
    starts = [0]
    for i, ch in enumerate(source):
        if ch == "\n":
            starts.append(i + 1)
    return starts


def compile_expression(source: str, constants: Mapping[str, Any] | None = None) -> CompiledExpression:
    """Check ``source`` against the whitelist and compile it to one function of a record.

    Raises :class:`ExpressionError` (with the column) for anything outside the language.
    """
    constants = dict(constants or {})
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("the expression is empty", 0)
    if len(source) > _MAX_SOURCE:
        raise ExpressionError(f"the expression is longer than {_MAX_SOURCE} characters", 0)
    lead = len(source) - len(source.lstrip())
    text = source.strip()
    # Several lines (a YAML block scalar) parse inside parentheses; offsets stay relative to text.
    parse_text = f"(\n{text}\n)" if "\n" in text else text
    try:
        tree = ast.parse(parse_text, mode="eval")
    except SyntaxError as exc:
        line = (exc.lineno or 1) - (1 if parse_text is not text else 0)
        starts = _line_starts(text)
        line = min(max(line, 1), len(starts))
        raise ExpressionError(
            f"syntax error: {exc.msg}", lead + starts[line - 1] + max((exc.offset or 1) - 1, 0)
        ) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ExpressionError(f"cannot parse the expression: {exc}", lead) from None
    starts = [0, *_line_starts(text)] if parse_text is not text else _line_starts(text)
    starts = [s + lead for s in starts]
    compiler = _Compiler(parse_text, constants, starts)
    try:
        body = compiler.visit(tree.body)
    except RecursionError:
        raise ExpressionError("the expression is nested too deeply", lead) from None

    python = (
        "def expression(r):\n"
        "    try:\n"
        f"        return {body}\n"
        "    except _Errors as exc:\n"
        "        raise _explain(exc, r) from None\n"
    )
    fields = frozenset(compiler.fields)
    missing, missing_value = missing_raisers(text)
    namespace: dict[str, Any] = {
        "__builtins__": {},
        "_missing": missing,
        "_missing_value": missing_value,
        "_field": field,
        "_item": item,
        "_pow": bounds.power,
        "_mul": bounds.mul,
        "_add": bounds.add,
        "_mod": bounds.mod,
        "_float": float,
        "_NUMBER": (float, int, bool),
        "_Errors": _ERRORS,
        "_explain": _explainer(text, fields),
        **compiler.globals,
    }
    with warnings.catch_warnings():  # `1 is None` is allowed: no SyntaxWarning about the generated code
        warnings.simplefilter("ignore", SyntaxWarning)
        code = compile(python, "<expression>", "exec")
    exec(code, namespace)  # generated from the whitelisted AST above; globals hold no builtins
    fn = namespace["expression"]
    return CompiledExpression(source=text, fn=fn, fields=fields, python=python, body=body)


# what one record can make an expression raise; each becomes an EvaluationError naming it
_ERRORS = (TypeError, ValueError, ArithmeticError, RecursionError, MemoryError, EvaluationError)


def _explainer(
    source: str, fields: frozenset[str]
) -> Callable[[Exception, Mapping[str, Any]], EvaluationError]:
    """Build the error for a failure the inline checks did not name (e.g. ``'a' * None``)."""

    def explain(exc: Exception, record: Mapping[str, Any]) -> EvaluationError:
        if isinstance(exc, EvaluationError):  # raised by a helper, which does not know the source
            exc.source = exc.source or source
            return exc
        missing = sorted(f for f in fields if record.get(f) is None)
        if isinstance(exc, ZeroDivisionError):
            message = "division by zero"
        elif isinstance(exc, TypeError) and missing:
            return EvaluationError(f"missing field {missing[0]} ({exc})", source, missing[0])
        else:
            message = f"{type(exc).__name__}: {exc}"
        return EvaluationError(message, source)

    return explain
