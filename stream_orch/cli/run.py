"""``stream-orch run FILE``: run a topology's nodes in this process until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stream_orch.cli.schemas_dir import add_schemas_option
from stream_orch.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("run", help="run a topology (all nodes, or --node)")
    p.add_argument("file", type=Path, help="topology YAML")
    p.add_argument("--node", action="append", help="run only this node (repeatable)")
    add_schemas_option(p)
    p.add_argument(
        "--stop-timeout", type=float, default=30.0, help="seconds to finish in-flight work on stop"
    )
    p.add_argument(
        "--serve-tables",
        dest="setting_tables_endpoint",
        action="store_const",
        const=True,
        default=None,
        help="serve /tables on the HTTP server, to requests with the bearer token STREAM_ORCH_HTTP_TOKEN "
        "(environment only)",
    )
    p.set_defaults(func=_run)


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    from stream_orch.codecs import SchemaRegistry
    from stream_orch.errors import UserError
    from stream_orch.observability.logging import setup_logging
    from stream_orch.runtime.reloading import ReloadSource
    from stream_orch.runtime.versions import TopologyVersion
    from stream_orch.runtime.worker import Worker
    from stream_orch.topology.lint import has_errors, lint
    from stream_orch.topology.loader import find_schemas_dir, parse_topology, read_topology_text
    from stream_orch.topology.repartition import expand

    setup_logging(settings.log_level, settings.log_json)
    text = read_topology_text(args.file)  # kept: the version a reload starts from
    loaded = parse_topology(text, args.file)
    schema_dir = find_schemas_dir(args.file, args.schemas)  # the error names the folders tried
    problems = lint(loaded, schema_dir)
    if has_errors(problems):  # the same checks as `stream-orch validate`: never run a broken graph
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1
    schemas = SchemaRegistry(schema_dir)
    runnable = expand(loaded.spec).nodes  # a node, or one part of a node split at a `repartition`
    for node in args.node or []:
        if node not in runnable:
            raise UserError(f"{args.file}: no node {node!r} (nodes: {', '.join(runnable)})")
    source = ReloadSource(TopologyVersion.of(loaded, text, schema_dir), args.file, schema_dir)
    worker = Worker(
        loaded.spec,
        settings,
        schemas,
        nodes=args.node,
        stop_timeout_s=args.stop_timeout,
        reload_source=source,
    )
    return await worker.run()
