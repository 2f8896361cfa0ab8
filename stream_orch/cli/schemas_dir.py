"""``--schemas DIR``: the option, and its rule, of every command that reads schemas.

The rule itself is :func:`stream_orch.topology.loader.find_schemas_dir` (``--schemas``, else
``schemas/`` beside the topology file, else ``./schemas``; the error names the folders tried).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stream_orch.topology.loader import SCHEMAS_RULE, find_schemas_dir

__all__ = ["SCHEMAS_RULE", "add_schemas_option", "find_schemas_dir"]


def add_schemas_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--schemas DIR`` (``args.schemas``, None when not given) with the rule in its help."""
    parser.add_argument(
        "--schemas",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"folder of <name>.avsc schema files; the folder used is {SCHEMAS_RULE}",
    )
