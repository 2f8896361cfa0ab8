"""``stream-orch graph FILE --format mermaid|dot``: draw a topology's data flow."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from stream_orch.settings import Settings
from stream_orch.topology.graph import build_graph, to_dot, to_mermaid
from stream_orch.topology.loader import SpecError, load_topology


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "graph",
        help="draw a topology: topics, nodes, tables, route conditions, retry and DLQ edges",
        description="Print the data flow as Mermaid (for Markdown) or Graphviz DOT "
        "(e.g. `stream-orch graph t.yaml --format dot | dot -Tsvg > t.svg`).",
    )
    parser.add_argument("file", type=Path, help="topology YAML file")
    parser.add_argument("--format", choices=("mermaid", "dot"), default="mermaid", help="default: mermaid")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        graph = build_graph(load_topology(args.file).spec)
    except SpecError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    print(to_dot(graph) if args.format == "dot" else to_mermaid(graph), end="")
    return 0
