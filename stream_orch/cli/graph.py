"""``stream-orch graph FILE --format mermaid|dot``: draw a topology's data flow."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from stream_orch.cli.schemas_dir import add_schemas_option
from stream_orch.cli.topology_file import load_or_report
from stream_orch.settings import Settings
from stream_orch.topology.graph import build_graph, to_dot, to_mermaid
from stream_orch.topology.lint import lint
from stream_orch.topology.loader import SchemasNotFound, find_schemas_dir


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "graph",
        help="draw a topology: topics, nodes, tables, route conditions, retry and DLQ edges",
        description="Print the data flow as Mermaid (for Markdown) or Graphviz DOT "
        "(e.g. `stream-orch graph t.yaml --format dot | dot -Tsvg > t.svg`). Routes are numbered "
        "from 1, as `validate` and the metrics' route label number them. With a schema folder the "
        "topology is checked too: its errors go to stderr (the drawing is printed anyway).",
    )
    parser.add_argument("file", type=Path, help="topology YAML file")
    parser.add_argument("--format", choices=("mermaid", "dot"), default="mermaid", help="default: mermaid")
    add_schemas_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    loaded = load_or_report(args.file)
    if loaded is None:
        return 1
    try:
        schemas: Path | None = find_schemas_dir(args.file, args.schemas)
    except SchemasNotFound as exc:
        if args.schemas is not None:
            raise  # asked for a folder that is not there
        print(f"note: {exc} (the topology is drawn without checking it)", file=sys.stderr)
        schemas = None
    if schemas is not None:
        for problem in lint(loaded, schemas):
            if problem.severity == "error":
                print(problem, file=sys.stderr)
    print(
        to_dot(build_graph(loaded.spec)) if args.format == "dot" else to_mermaid(build_graph(loaded.spec)),
        end="",
    )
    return 0
