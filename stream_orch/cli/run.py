"""``stream-orch run FILE``: run a topology's nodes in this process until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stream_orch.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("run", help="run a topology (all nodes, or --node)")
    p.add_argument("file", type=Path, help="topology YAML")
    p.add_argument("--node", action="append", help="run only this node (repeatable)")
    p.add_argument("--schemas", type=Path, default=None, help="schema folder (default: <repo>/schemas)")
    p.add_argument(
        "--stop-timeout", type=float, default=30.0, help="seconds to finish in-flight work on stop"
    )
    p.set_defaults(func=_run)


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    from stream_orch.codecs import SchemaRegistry
    from stream_orch.errors import UserError
    from stream_orch.observability.logging import setup_logging
    from stream_orch.runtime.worker import Worker
    from stream_orch.topology.lint import has_errors, lint
    from stream_orch.topology.loader import load_topology

    setup_logging(settings.log_level, settings.log_json)
    loaded = load_topology(args.file)
    schema_dir = args.schemas or default_schema_dir(args.file)
    problems = lint(loaded, schema_dir)
    if has_errors(problems):  # the same checks as `stream-orch validate`: never run a broken graph
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1
    schemas = SchemaRegistry(schema_dir)
    for node in args.node or []:
        if node not in loaded.spec.nodes:
            raise UserError(f"{args.file}: no node {node!r} (nodes: {', '.join(loaded.spec.nodes)})")
    worker = Worker(loaded.spec, settings, schemas, nodes=args.node, stop_timeout_s=args.stop_timeout)
    return await worker.run()


def default_schema_dir(topology: Path) -> Path:
    """``schemas/`` beside the folder holding the topology (the repository layout), else ./schemas."""
    from stream_orch.topology.lint import default_schemas_dir

    beside = default_schemas_dir(topology)
    return beside if beside.is_dir() else Path("schemas")
