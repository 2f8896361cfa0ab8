"""Imports point one way (docs/ARCHITECTURE.md): the packages below the CLI never import the CLI,
the tools or the test driver, and ``transport`` (every Kafka client) imports no package above it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "stream_orch"
TOP = {"cli", "tools", "testing"}  # only the CLI composes these (tools and testing import themselves)
TRANSPORT_MAY_IMPORT = {"transport", "errors", "settings", "redact"}


def _imports() -> list[tuple[str, str, str]]:
    """(importing package, imported package, file:line) for every ``stream_orch.*`` import."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] == "stream_orch" and len(parts) > 1:
                    found.append((here, parts[1], f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"))
    return found


def test_nothing_below_the_cli_imports_cli_tools_or_testing():
    upward = [where for here, there, where in _imports() if there in TOP and here not in ("cli", there)]
    assert upward == []


def test_transport_imports_only_leaves():
    upward = [
        where
        for here, there, where in _imports()
        if here == "transport" and there not in TRANSPORT_MAY_IMPORT
    ]
    assert upward == []
