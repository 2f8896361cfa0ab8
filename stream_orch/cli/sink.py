"""``stream-orch sink init TOPOLOGY [--apply]``: the tables of the topology's `postgres:` targets."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stream_orch.audit.events import AuditSubject
from stream_orch.cli.schemas_dir import add_schemas_option, find_schemas_dir
from stream_orch.cli.topology_file import load_or_report
from stream_orch.codecs.schemas import SchemaRegistry
from stream_orch.settings import Settings
from stream_orch.topology.lint import lint

if TYPE_CHECKING:
    from stream_orch.sinks.postgres_init import TargetTable


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sink",
        help="prepare the destinations outside Kafka (PostgreSQL tables)",
        description="Destinations of a topology's route targets outside Kafka.",
    )
    sub = parser.add_subparsers(dest="sink_command", required=True, metavar="COMMAND")
    init = sub.add_parser(
        "init",
        help="print (or run) CREATE TABLE for every postgres: target",
        description="Print the CREATE TABLE statements of every `postgres:` target (columns from its "
        "schema; key columns the primary key of an upsert table) and of the tables the engine keeps "
        "beside them (stream_orch_offsets, stream_orch_rejects). --apply runs them on each target's "
        "database, its DSN from the environment variable the target names (dsn_env).",
    )
    init.add_argument("file", type=Path, help="topology YAML file")
    init.add_argument("--apply", action="store_true", help="run the statements instead of printing them")
    add_schemas_option(init)
    init.set_defaults(func=run_init)


def run_init(args: argparse.Namespace, settings: Settings) -> int:
    from stream_orch.sinks.postgres_init import script, target_tables

    loaded = load_or_report(args.file)
    if loaded is None:
        return 1
    schemas_dir = find_schemas_dir(args.file, args.schemas)
    errors = [p for p in lint(loaded, schemas_dir) if p.severity == "error"]
    if errors:
        for problem in errors:
            print(problem, file=sys.stderr)
        return 1
    tables = target_tables(loaded.spec, SchemaRegistry(schemas_dir))
    if not tables:
        print(f"{args.file}: no postgres: targets", file=sys.stderr)
        return 1
    if not args.apply:
        print(script(tables), end="")
        return 0
    subject = AuditSubject.of_topology(loaded.spec, args.file, schemas_dir)
    for line in asyncio.run(_apply_audited(settings, subject, tables)):
        print(line)
    return 0


async def _apply_audited(settings: Settings, subject: AuditSubject, tables: list[TargetTable]) -> list[str]:
    """``apply``, audited: the audit topic is opened first (one that cannot be written stops the
    run before a statement), and the run's record names the targets and their DSN variables."""
    from stream_orch.audit import Auditor, audit_log
    from stream_orch.audit.events import SINK_INIT
    from stream_orch.sinks.postgres_init import apply

    auditor = Auditor(audit_log(settings, strict=True), subject)
    await auditor.start()
    try:
        lines = await apply(tables)
        await auditor.record(
            SINK_INIT,
            targets=[f"{t.node}/{t.target}" for t in tables],
            dsn_env=sorted({t.dsn_env for t in tables}),
        )
        return lines
    finally:
        await auditor.close()
