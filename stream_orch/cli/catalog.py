"""``stream-orch catalog TOPOLOGY... [--format md|json]``: the data catalog and field lineage of
one or more topologies (:mod:`stream_orch.topology.catalog`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from stream_orch.cli.schemas_dir import add_schemas_option
from stream_orch.cli.topology_file import load_or_report
from stream_orch.errors import UserError
from stream_orch.settings import Settings
from stream_orch.topology.catalog import build_catalog
from stream_orch.topology.catalog_markdown import to_markdown
from stream_orch.topology.catalog_openlineage import dumps, to_openlineage
from stream_orch.topology.lint import has_errors, lint
from stream_orch.topology.loader import find_schemas_dir
from stream_orch.topology.schema_fields import SchemaFields


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "catalog",
        help="print the data catalog: topics, schemas, PII, writers and readers, field lineage",
        description="Print every topic of the topologies with its schema, key, partitions, retention, "
        "compaction, PII fields, audience and the nodes that write and read it, and for every field a "
        "node writes where its value comes from (input field, table field, expression, step). Markdown "
        "(a catalog page) or JSON in OpenLineage's dataset and columnLineage facet shapes. Several "
        "files are one catalog (topics alike by name are one topic). A topology with lint errors is "
        "not catalogued: its problems go to stderr and the exit code is 1.",
    )
    parser.add_argument("files", type=Path, nargs="+", metavar="TOPOLOGY", help="topology YAML files")
    parser.add_argument("--format", choices=("md", "json"), default="md", help="default: md")
    parser.add_argument(
        "--namespace",
        default=None,
        help="OpenLineage namespace of the topics (default: kafka://<first bootstrap server>)",
    )
    add_schemas_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    topologies = []
    failed = False
    names: dict[str, Path] = {}
    for path in args.files:
        loaded = load_or_report(path)
        if loaded is None:
            failed = True
            continue
        if loaded.spec.topology in names:
            raise UserError(
                f"{path}: topology `{loaded.spec.topology}` is also {names[loaded.spec.topology]}"
            )
        names[loaded.spec.topology] = path
        schemas_dir = find_schemas_dir(path, args.schemas)
        problems = [p for p in lint(loaded, schemas_dir) if p.severity == "error"]
        for problem in problems:
            print(problem, file=sys.stderr)
        failed = failed or has_errors(problems)
        topologies.append((loaded, SchemaFields(schemas_dir).definitions))
    if failed:
        return 1
    catalog = build_catalog(topologies)
    if args.format == "json":
        namespace = args.namespace or f"kafka://{settings.bootstrap_servers.split(',')[0].strip()}"
        print(dumps(to_openlineage(catalog, namespace)), end="")
    else:
        print(to_markdown(catalog), end="")
    return 0
