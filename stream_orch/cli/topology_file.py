"""Reading the topology file a command was given: its problems are printed, one per line at
file:line, and the command ends with exit 1 instead of a traceback."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from stream_orch.topology.loader import LoadedTopology, SpecError, load_topology


def load_or_report(
    path: Path, env: Mapping[str, str] | None = None, out: TextIO | None = None
) -> LoadedTopology | None:
    """The loaded topology, or None after printing every problem to ``out`` (stderr by default)."""
    try:
        return load_topology(path, env)
    except SpecError as exc:
        for problem in exc.problems:
            print(problem, file=out or sys.stderr)
        return None
