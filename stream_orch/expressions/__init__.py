"""The safe expression language of topologies (derive, filter, score rules, route conditions).

Expressions are Python syntax restricted by a whitelist, compiled once to a Python function::

    expr = compile_expression("amount * rates[currency]", constants={"rates": {"EUR": 1.0}})
    expr.fn({"amount": 2, "currency": "EUR"})  # -> 2.0
    expr.fields                                 # -> frozenset({"amount", "currency"})

See :mod:`stream_orch.expressions.compiler` for the rules on missing fields.
"""

from stream_orch.expressions.compiler import (
    FUNCTIONS,
    CompiledExpression,
    EvaluationError,
    ExpressionError,
    compile_expression,
)

__all__ = ["FUNCTIONS", "CompiledExpression", "EvaluationError", "ExpressionError", "compile_expression"]
