"""Field reads shared by several compiled bodies, read once: for the generated functions that
inline many expressions over one record (score's rules, the routes' conditions)."""

from __future__ import annotations

import ast
from collections import Counter


def _field_read(node: ast.AST) -> str | None:
    """The field of a compiled body's ``r.get('field')``, else None."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "r"
        and len(node.args) == 1
        and not node.keywords
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return node.args[0].value
    return None


class _Replace(ast.NodeTransformer):
    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    def visit_Call(self, node: ast.Call) -> ast.AST:
        field = _field_read(node)
        if field is not None and field in self.names:
            return ast.copy_location(ast.Name(id=self.names[field], ctx=ast.Load()), node)
        return self.generic_visit(node)


def hoist_reads(bodies: list[str], prefix: str = "_read") -> tuple[list[str], list[str]]:
    """The fields read (``r.get('field')``, as the expression compiler writes a field) two times
    or more in ``bodies``, each read once into a local named ``prefix`` + a number: (the
    assignments, to run first, the bodies reading the locals). The compiled bodies read the
    record and change nothing, so reading a field first and once gives each body the value it
    would have read; a read that no body reaches for a record costs a lookup and nothing else
    (``dict.get`` of a str key neither raises nor runs user code)."""
    trees = [ast.parse(body, mode="eval") for body in bodies]
    counts: Counter[str] = Counter()
    for tree in trees:
        for node in ast.walk(tree):
            field = _field_read(node)
            if field is not None:
                counts[field] += 1
    shared = [field for field, n in counts.items() if n >= 2]
    if not shared:
        return [], list(bodies)
    names = {field: f"{prefix}{i}" for i, field in enumerate(shared)}
    replace = _Replace(names)
    out = [ast.unparse(ast.fix_missing_locations(replace.visit(tree)).body) for tree in trees]
    return [f"{names[field]} = r.get({field!r})" for field in shared], out
