"""``stream-orch diff OLD NEW``: what changed between two versions of a topology, and whether each
changed schema still reads (and is read by) the other version's data.

Exit 0 when every schema change meets ``--compatibility`` (the topology's own changes never fail
the command), 1 when one does not, 2 for a usage or configuration error. ``--format json`` prints
one object whose keys are documented in the README ("Changing a topology safely")."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from stream_orch.codecs.compatibility import LEVELS
from stream_orch.errors import UserError
from stream_orch.settings import Settings
from stream_orch.topology.loader import (
    SCHEMAS_RULE,
    LoadedTopology,
    SpecError,
    find_schemas_dir,
    load_topology,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "diff",
        help="what changed between two versions of a topology, and their schemas' compatibility",
        description="Compare two topology files as the loader reads them (a comment or a reordered key "
        "is no change): topics, tables, nodes, steps and their fields, score rules, routes and their "
        "targets, error policies, constants. Each line names where: file:line in NEW (in OLD for a "
        "removal). Every schema either version uses that changed is checked for Avro compatibility "
        "(backward: the new schema reads old data; forward: the old reads new data; full: both). Exit 0 "
        "when every schema change meets --compatibility, 1 when one does not, 2 for a usage or "
        f"configuration error. Each file's schema folder is {SCHEMAS_RULE}.",
    )
    parser.add_argument("old", type=Path, help="the topology file as it is (deployed)")
    parser.add_argument("new", type=Path, help="the changed topology file")
    parser.add_argument("--schemas", type=Path, metavar="DIR", help="schema folder of both versions")
    parser.add_argument("--old-schemas", type=Path, metavar="DIR", help="schema folder of OLD")
    parser.add_argument("--new-schemas", type=Path, metavar="DIR", help="schema folder of NEW")
    parser.add_argument(
        "--compatibility",
        choices=LEVELS,
        default="backward",
        help="level a changed schema must meet (default: backward, as a schema registry)",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output (default: text)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from stream_orch.topology.diff import diff_topologies
    from stream_orch.topology.diff_schemas import schema_changes

    if args.schemas is not None and (args.old_schemas is not None or args.new_schemas is not None):
        raise UserError("give either --schemas or --old-schemas/--new-schemas, not both")
    old, new = _load(args.old), _load(args.new)
    old_dir = find_schemas_dir(args.old, args.old_schemas or args.schemas)
    new_dir = find_schemas_dir(args.new, args.new_schemas or args.schemas)
    changes = diff_topologies(old, new)
    schemas = schema_changes(old, new, old_dir, new_dir)
    level = args.compatibility
    broken = [s for s in schemas if s.breaks(level)]
    if args.format == "json":
        document = {
            "old": _version(old, old_dir),
            "new": _version(new, new_dir),
            "compatibility": level,
            "compatible": not broken,
            "changes": [c.as_json() for c in changes],
            "schemas": [s.as_json(level) for s in schemas],
        }
        sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 1 if broken else 0
    a, b = old.spec, new.spec
    count = f"{len(changes)} change{'' if len(changes) == 1 else 's'}" if changes else "no changes"
    print(f"{a.topology} {a.version} ({args.old}) -> {b.topology} {b.version} ({args.new}): {count}")
    for change in changes:
        print(f"  {change}")
    if not schemas:
        print("schemas: no changes")
    else:
        print(f"schemas (--compatibility {level}):")
    for schema in schemas:
        problems = schema.breaks(level) or schema.backward + schema.forward
        verdict = "breaks" if schema.breaks(level) else "meets"
        print(f"  {schema.file}: {schema.subject}: {schema.compatibility} compatible ({verdict} {level})")
        for problem in problems:
            print(f"    {schema.new_name}: {problem}")
    if broken:
        names = ", ".join(s.subject for s in broken)
        print(f"FAIL: {names} not {level} compatible")
    return 1 if broken else 0


def _load(path: Path) -> LoadedTopology:
    try:
        return load_topology(path)
    except SpecError as exc:
        # a configuration error (exit 2) with every problem at its line, as `validate` prints them
        raise UserError("\n".join(str(p) for p in exc.problems)) from None


def _version(loaded: LoadedTopology, schemas: Path) -> dict[str, Any]:
    return {
        "file": loaded.file,
        "topology": loaded.spec.topology,
        "version": loaded.spec.version,
        "schemas": str(schemas),
    }
