"""What a data set of ``stream-orch generate`` provides: its own arguments and a build function.

Each data set (fraud, reconciliation, ...) lives in its own ``gen_<kind>.py`` module and is listed
once in :mod:`stream_orch.cli.generate`; the command owns the arguments every kind shares
(``--seed``, ``--rate``, ``--partitions``, ``--truth``, ``--dry-run``) and the publishing.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Generated:
    """The records to publish, the topics they need, a summary printed as one JSON line, and the
    expected outcome (written to ``--truth`` when given; None for a kind without one)."""

    records: list[Any]
    topics: list[Any]
    summary: dict[str, Any]
    truth: dict[str, Any] | None = None


@dataclass(frozen=True)
class Kind:
    help: str
    add_arguments: Callable[[argparse._ArgumentGroup], None]
    build: Callable[[argparse.Namespace], Generated]
    #: Arguments that must be >= 0 (checked by the command with one line each).
    non_negative: tuple[str, ...] = field(default=())
