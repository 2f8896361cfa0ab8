"""``stream-orch run FILE``: run a topology's nodes in this process until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from stream_orch.cli.argtypes import past_time_ms, positive_float, process_count
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
    p.add_argument(
        "--shadow",
        action="store_true",
        help="run this version beside the live one on the same input: own consumer groups "
        "(<topology>.shadow.<node>), own state, writing only <topic>.shadow topics (outputs, DLQ, retry "
        "tiers, changelogs); never the live outputs or targets outside Kafka. Compare with "
        "`stream-orch shadow report FILE`",
    )
    p.add_argument(
        "--from-time",
        type=past_time_ms,
        metavar="2h|ISO",
        help="with --shadow: start from the input's records of that time on (a backtest; e.g. 24h "
        "or 2026-12-03T08:00:00Z) instead of the live group's committed offsets",
    )
    p.add_argument(
        "--shadow-rate",
        type=positive_float,
        metavar="R",
        help="with --shadow: process at most R input records a second per node, leaving the live "
        "worker the machine (a shadow that falls behind is compared on what it has processed)",
    )
    p.add_argument(
        "--processes",
        type=process_count,
        default=1,
        metavar="N|auto",
        help="run N worker processes (auto: one per core) under one supervisor: members of the same "
        "consumer groups, each with its own state folder (<state_dir>/processes/<i>) and static member "
        "id; one /metrics, /health, /ready and /status for all on the metrics port; a member that dies "
        "is restarted and gets its partitions back; SIGTERM drains them all (default 1: this process)",
    )
    p.set_defaults(func=_run)


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    from stream_orch.audit import AuditSubject
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
    spec = loaded.spec
    if args.processes > 1:
        return await _supervise(args, settings, schema_dir)
    if args.from_time is not None and not args.shadow:
        raise UserError("--from-time: only with --shadow (a live worker starts at its committed offsets)")
    if args.shadow_rate is not None and not args.shadow:
        raise UserError("--shadow-rate: only with --shadow (a live worker is not held back)")
    if args.shadow:
        from stream_orch.tools.shadow.lifecycle import set_start
        from stream_orch.topology.shadow import shadow

        for line in await set_start(spec, settings, args.from_time):
            print(f"shadow: {line}", file=sys.stderr)
        spec = shadow(spec)
        if args.shadow_rate is not None:
            settings = settings.model_copy(update={"max_records_per_s": args.shadow_rate})
    # a shadow runs its transform of the file: a reload of the file would be another topology
    source = None
    if not args.shadow:
        source = ReloadSource(TopologyVersion.of(loaded, text, schema_dir), args.file, schema_dir)
    subject = AuditSubject.of_topology(spec, args.file, schema_dir)
    worker = Worker(
        spec,
        settings,
        schemas,
        nodes=args.node,
        stop_timeout_s=args.stop_timeout,
        audit_subject=subject,
        shadow={"from_time_ms": args.from_time, "rate": args.shadow_rate} if args.shadow else None,
        reload_source=source,
    )
    return await worker.run()


async def _supervise(args: argparse.Namespace, settings: Settings, schema_dir: Path) -> int:
    """The topology is checked (above) once here; each member is a plain ``run`` of the same file."""
    from stream_orch.errors import UserError
    from stream_orch.observability.logging import setup_logging
    from stream_orch.supervise.supervisor import Supervisor, plan_members

    if args.shadow:
        raise UserError("--processes: not with --shadow (run the shadow as one process)")
    if settings.tables_endpoint:
        raise UserError(
            "--processes: not with --serve-tables (each member holds only its own partitions' rows)"
        )
    argv = [sys.executable, "-m", "stream_orch.cli.main", "run", str(args.file), "--schemas", str(schema_dir)]
    argv += [f"--node={n}" for n in args.node or []]
    argv += ["--stop-timeout", str(args.stop_timeout)]
    setup_logging(settings.log_level, settings.log_json)
    members = plan_members(settings, args.processes, argv, dict(os.environ))
    return await Supervisor(settings, members, args.stop_timeout).run()
