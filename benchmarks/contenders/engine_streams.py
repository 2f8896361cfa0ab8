"""Our engine as a `window` or `join` contender: a per-run copy of a topology, as in :mod:`.engine`.

``engine.render`` renames the declared topics, node inputs, routes, tables and DLQs; a ``join``
step also names the topic whose records enter the node (``topic: settlements``), which this module
renames the same way before writing the copy.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

from benchmarks import env
from benchmarks.contenders import engine

WINDOW_TOPOLOGY = engine.REPO / "benchmarks" / "topologies" / "window.yaml"
JOIN_TOPOLOGY = engine.REPO / "topologies" / "reconciliation.yaml"

WINDOW_TOPICS = {
    "bench.transactions.by_merchant": env.INPUT,
    "bench.merchant.minutes": env.OUTPUT,
    "bench.transactions.dlq": env.DLQ,
}
JOIN_TOPICS = {
    "payments": env.INPUT,
    "settlements": env.SETTLEMENTS,
    "payments.reconciled": env.RECONCILED,
    "payments.mismatch": env.MISMATCH,
    "payments.unreconciled": env.UNRECONCILED,
    "payments.dlq": env.DLQ,
}


def render(
    topology: Path,
    topics: Mapping[str, str],
    run_env: Mapping[str, str],
    processing: str | None = None,
    store: str | None = None,
) -> dict[str, Any]:
    data = engine.render(topology, topics, run_env, processing, store)
    prefix = run_env[env.TOPOLOGY]
    for node in data["nodes"].values():
        for step in node.get("steps", []):
            if step.get("step") == "join":
                name = step["topic"]
                step["topic"] = run_env[topics[name]] if name in topics else f"{prefix}.{name}"
    return data


def command(
    topology: Path,
    topics: Mapping[str, str],
    processing: str | None = None,
    store: str | None = None,
    checkout: str | None = None,
) -> Callable[[dict[str, str], Path], list[str]]:
    """argv for one worker (``checkout``: with the engine of that other checkout, as
    :func:`.engine.command` runs it)."""

    def argv(run_env: dict[str, str], work: Path) -> list[str]:
        rendered = work / f"{topology.stem}.rendered.yaml"
        data = render(topology, topics, run_env, processing, store)
        rendered.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
        run = [engine._stream_orch()] if checkout is None else [sys.executable, "-m", engine.AT, checkout]
        return [*run, "run", str(rendered), "--schemas", str(engine.SCHEMAS)]

    return argv


def unavailable(
    topology: Path, topics: Mapping[str, str], processing: str | None = None
) -> Callable[[], str | None]:
    def check() -> str | None:
        missing = engine._run_command_missing()
        if missing:
            return missing
        if not topology.exists():
            return f"{topology.relative_to(engine.REPO)} not available yet"
        dummy = {v: f"bench.check.{v.lower()}" for v in (env.TOPOLOGY, *topics.values())}
        try:
            from stream_orch.topology.models import TopologySpec

            TopologySpec.model_validate(render(topology, topics, dummy, processing))
        except Exception as exc:  # the engine is being written: any failure means "not yet"
            return f"{topology.relative_to(engine.REPO)} does not load: {str(exc).splitlines()[0][:200]}"
        return None

    return check
