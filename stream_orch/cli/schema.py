"""``stream-orch schema``: the JSON Schema of topology files, for editors."""

from __future__ import annotations

import argparse
import json
from typing import Any

from stream_orch.settings import Settings
from stream_orch.topology.docs import topology_json_schema


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "schema",
        help="print the JSON Schema of topology YAML files",
        description="Print the JSON Schema of the topology language. Point your editor's YAML "
        "support at it, e.g. `# yaml-language-server: $schema=topology.schema.json`.",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(topology_json_schema(), indent=2))
    return 0
