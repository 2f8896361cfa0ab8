"""``stream-orch shadow report|delete FILE``: compare a shadow run with the live version, and
remove a shadow run's groups and topics (the run itself is ``stream-orch run FILE --shadow``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from stream_orch.cli.schemas_dir import add_schemas_option
from stream_orch.errors import UserError
from stream_orch.settings import Settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "shadow",
        help="compare a shadow run (run FILE --shadow) with the live version, or delete it",
        description="A shadow run writes <topic>.shadow topics with the input's lineage headers; the report "
        "joins them with the live outputs by input (topic, partition, offset).",
    )
    sub = parser.add_subparsers(dest="shadow_command", metavar="ACTION")

    p = sub.add_parser(
        "report",
        help="records per route in each version, moves between routes, score changes, new dead letters",
        description="Compares the inputs both versions have processed: per input partition from the later "
        "of the two versions' first input seen up to the earlier of their groups' committed offsets.",
    )
    p.add_argument("file", type=Path, help="the topology the shadow runs (NEW.yaml)")
    p.add_argument(
        "--live", type=Path, metavar="OLD.yaml", help="the live version's topology (default: FILE's topics)"
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--examples", type=int, default=5, metavar="N", help="moved inputs shown (default 5)")
    add_schemas_option(p)
    p.set_defaults(func=_report)

    p = sub.add_parser("delete", help="delete a shadow run's consumer groups and .shadow topics")
    p.add_argument("file", type=Path, help="the topology the shadow ran")
    p.set_defaults(func=_delete)
    parser.set_defaults(func=_missing_action)


def _missing_action(args: argparse.Namespace, settings: Settings) -> int:
    raise UserError("shadow: say what to do: `stream-orch shadow report FILE` or `... shadow delete FILE`")


async def _report(args: argparse.Namespace, settings: Settings) -> int:
    from stream_orch.codecs import SchemaRegistry
    from stream_orch.tools.shadow.report import as_text, shadow_report
    from stream_orch.topology.loader import find_schemas_dir, load_topology

    if args.examples < 0:
        raise UserError("--examples: must be 0 or more")
    new = load_topology(args.file).spec
    old = load_topology(args.live).spec if args.live is not None else new
    if old.topology != new.topology:
        raise UserError(
            f"--live: {args.live} is topology {old.topology!r}, {args.file} is {new.topology!r}: "
            "a shadow compares two versions of one topology"
        )
    schemas = SchemaRegistry(find_schemas_dir(args.file, args.schemas))
    report = await shadow_report(new, old, settings, schemas, args.examples)
    if args.format == "json":
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(as_text(report))
    return 0


async def _delete(args: argparse.Namespace, settings: Settings) -> int:
    from stream_orch.tools.shadow.lifecycle import delete
    from stream_orch.topology.loader import load_topology

    groups, topics = await delete(load_topology(args.file).spec, settings)
    print(f"deleted {len(groups)} consumer groups: {', '.join(groups) or '-'}")
    print(f"deleted {len(topics)} topics: {', '.join(topics) or '-'}")
    return 0
