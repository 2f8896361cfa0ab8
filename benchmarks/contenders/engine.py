"""Our engine as a contender: ``stream-orch run TOPOLOGY`` with the harness's topic names.

The topology files read the per-run names through ``${VAR:default}`` interpolation of the
variables in :mod:`benchmarks.env` (BENCH_TOPOLOGY for the topology name, which makes the
consumer groups ``<topology>.<node>`` and the changelog topics fresh per run). Until
``stream-orch run`` exists, or while a topology file does not read those variables (it would
then mix runs on fixed topic names), the entries are skipped with the reason.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks import env

REPO = Path(__file__).resolve().parents[2]
FRAUD_TOPOLOGY = REPO / "topologies" / "fraud_detection.yaml"
FORWARD_TOPOLOGY = REPO / "benchmarks" / "topologies" / "forward.yaml"

# Engine settings for every benchmark worker: no metrics port (several workers share the host
# in the scaling run), quiet logs. Broker and state dir are filled in per run by the harness.
ENV = {"STREAM_ORCH_METRICS_PORT": "0", "STREAM_ORCH_LOG_LEVEL": "WARNING"}

# The variables a topology must read, by kind (the harness sets all of env.* for every run).
REQUIRED = {
    "forward": (env.TOPOLOGY, env.INPUT, env.OUTPUT),
    "fraud": (env.TOPOLOGY, *env.FRAUD_TOPICS),
}


def _stream_orch() -> str:
    exe = Path(sys.executable).with_name("stream-orch")
    return str(exe) if exe.exists() else "stream-orch"


def argv(topology: Path) -> Callable[[], list[str]]:
    return lambda: [_stream_orch(), "run", str(topology)]


@functools.cache
def _run_command_missing() -> str | None:
    try:
        proc = subprocess.run([_stream_orch(), "run", "--help"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`stream-orch run --help` failed: {exc}"
    return None if proc.returncode == 0 else "`stream-orch run` not available yet"


def unavailable(topology: Path, kind: str) -> Callable[[], str | None]:
    def check() -> str | None:
        missing = _run_command_missing()
        if missing:
            return missing
        if not topology.exists():
            return f"{topology.relative_to(REPO)} not available yet"
        text = topology.read_text()
        unread = [v for v in REQUIRED[kind] if "${" + v not in text]
        if unread:
            return (
                f"{topology.relative_to(REPO)} does not read ${{{unread[0]}}} (and {len(unread) - 1} more): "
                "its topic names cannot be pointed at per-run topics"
            )
        return None

    return check
