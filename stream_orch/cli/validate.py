"""``stream-orch validate FILE``: load and lint a topology, one line per problem."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from stream_orch.cli.schemas_dir import add_schemas_option
from stream_orch.cli.topology_file import load_or_report
from stream_orch.settings import Settings
from stream_orch.topology.lint import has_errors, lint
from stream_orch.topology.yaml_reader import MAX_BYTES, MAX_DEPTH, MAX_VALUES


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check a topology: schemas, topics, tables, fields, outputs, cycles, co-partitioning",
        description="Print every problem as file:line: message (hint: ...). Exit 1 on any error "
        "(warnings alone exit 0). Outputs are checked against their topic's schema: every `set` "
        "field must be in it, and every required field must be provided. Personal data (schema fields "
        'with `"pii"`) is followed through steps, routes and nodes to topics whose `pii` policy or '
        "`audience` refuses it. A file that cannot be read "
        f"or is refused (over {MAX_BYTES // 2**20} MiB, nested deeper than {MAX_DEPTH} levels, aliases "
        f"expanding beyond {MAX_VALUES:,} values, a YAML tag outside the core schema) is one line on "
        "stderr and exit 2.",
    )
    parser.add_argument("file", type=Path, help="topology YAML file")
    add_schemas_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    loaded = load_or_report(args.file, out=sys.stdout)
    if loaded is None:
        return 1
    problems = lint(loaded, args.schemas)
    for problem in problems:
        print(problem)
    if has_errors(problems):
        return 1
    spec = loaded.spec
    print(f"OK: {spec.topology} ({len(spec.nodes)} nodes, {len(spec.topics)} topics)")
    return 0
