"""Our engine as a contender: ``stream-orch run`` on a per-run copy of a topology.

Every run needs fresh topics and a fresh consumer group. The harness passes the per-run
names in the ``BENCH_*`` variables (:mod:`benchmarks.env`), and this entry renders a copy of
the topology in which

* the topology name is ``BENCH_TOPOLOGY``, so the consumer groups ``<topology>.<node>`` and
  changelog topics ``<topology>.<table>.changelog`` are fresh;
* each declared topic named in the entry's map gets the name the harness gave it (for
  example ``transactions`` → ``$BENCH_INPUT_TOPIC``); any other declared topic (an
  intermediate one such as ``customers.clean``) gets the per-run prefix;
* the node reading the input dead-letters to ``$BENCH_DLQ_TOPIC``;
* optionally the topology-level ``processing`` is overridden (``exactly_once`` for the
  ``engine_fraud_eos`` entry: the same topology, outputs written in Kafka transactions).

Rendering is needed because the loader interpolates ``${VAR:default}`` in values only, not in
mapping keys, and topic names are the keys of ``topics:``. The copy goes through the project's
own loader (values are still interpolated from the environment) and is validated again when
``stream-orch run`` loads it. Until ``stream-orch run`` exists or a topology loads, the entry
is skipped with the reason.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

from benchmarks import env

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"
FRAUD_TOPOLOGY = REPO / "topologies" / "fraud_detection.yaml"
FORWARD_TOPOLOGY = REPO / "benchmarks" / "topologies" / "forward.yaml"

# Topic name in the topology file -> the harness variable holding its per-run name.
FRAUD_TOPICS = {
    "transactions": env.INPUT,
    "customers": env.CUSTOMERS,
    "transactions.enriched": env.ENRICHED,
    "fraud.alerts": env.ALERTS,
    "account.actions": env.ACTIONS,
    "fraud.review": env.REVIEW,
    "transactions.approved": env.APPROVED,
    "transactions.dlq": env.DLQ,
}
FORWARD_TOPICS = {
    "bench.transactions": env.INPUT,
    "bench.forwarded": env.OUTPUT,
    "bench.transactions.dlq": env.DLQ,
}

# Engine settings for every benchmark worker: no metrics port (several workers share the host
# in the scaling run), quiet logs. Broker and state dir are set per run by the harness.
# BENCH_ENGINE_METRICS_PORT gives the workers one (a run without scaling, one worker at a time) for
# benchmarks/phases.py to read where a batch's time goes.
ENV = {
    "STREAM_ORCH_METRICS_PORT": os.environ.get("BENCH_ENGINE_METRICS_PORT", "0"),
    "STREAM_ORCH_LOG_LEVEL": "WARNING",
}


AT = "benchmarks.contenders.engine_at"


def _stream_orch() -> str:
    exe = Path(sys.executable).with_name("stream-orch")
    return str(exe) if exe.exists() else "stream-orch"


def render(
    topology: Path,
    topics: Mapping[str, str],
    run_env: Mapping[str, str],
    processing: str | None = None,
    store: str | None = None,
    models: bool = True,
) -> dict[str, Any]:
    """The topology as plain data, renamed for one run and with ``processing`` (and the ``store``
    of tables written by steps) overridden when given (see the module docstring); without its
    model steps when ``models`` is false (:func:`drop_models`)."""
    from stream_orch.topology.loader import load_topology

    spec = load_topology(topology, env={**os.environ, **run_env}).spec
    data = spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
    prefix = run_env[env.TOPOLOGY]

    def new(name: str) -> str:
        return run_env[topics[name]] if name in topics else f"{prefix}.{name}"

    data["topology"] = prefix
    if not models:
        drop_models(data)
    # the copy is written elsewhere: model files (and python modules) are found in the original's folder
    data["python_paths"] = [str(topology.parent.resolve()), *data.get("python_paths", [])]
    if processing is not None:
        data["processing"] = processing
    data["topics"] = {new(name): t for name, t in data["topics"].items()}
    for table in data.get("tables", {}).values():
        if table.get("topic"):
            table["topic"] = new(table["topic"])
        elif store is not None:
            table["store"] = store
    input_name = next((k for k, v in topics.items() if v == env.INPUT), None)
    for node in data["nodes"].values():
        original_input = node["input"]
        node["input"] = new(original_input)
        for route in node.get("routes", []):
            route["to"] = [
                new(t) if isinstance(t, str) else {**t, "topic": new(t["topic"])} for t in route["to"]
            ]
        errors = node.setdefault("errors", {})
        if original_input == input_name:
            errors["dlq"] = run_env[env.DLQ]
        elif errors.get("dlq"):
            errors["dlq"] = new(errors["dlq"])
    return data


def drop_models(data: dict[str, Any]) -> None:
    """Take the ``model`` steps out of a topology given as plain data, and the score rules that read
    their output: the same topology without its model term."""
    for node in data["nodes"].values():
        steps = node.get("steps", [])
        outputs = [s["output"] for s in steps if s["step"] == "model"]
        if not outputs:
            continue
        node["steps"] = [s for s in steps if s["step"] != "model"]
        for step in node["steps"]:
            if step["step"] == "score":
                step["rules"] = [r for r in step["rules"] if not any(o in r["when"] for o in outputs)]


def command(
    topology: Path,
    topics: Mapping[str, str],
    processing: str | None = None,
    store: str | None = None,
    models: bool = True,
    processes: int = 1,
    checkout: str | None = None,
) -> Callable[[dict[str, str], Path], list[str]]:
    """argv for one worker (``processes`` > 1: a supervisor of that many): render the per-run
    copy into its state dir, run it (``checkout``: with the engine of that other checkout,
    ``engine_at.py``)."""

    def argv(run_env: dict[str, str], work: Path) -> list[str]:
        rendered = work / f"{topology.stem}.rendered.yaml"
        # JSON is YAML: no YAML writer needed, and the loader reads it like the original
        data = render(topology, topics, run_env, processing, store, models)
        rendered.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
        more = ["--processes", str(processes)] if processes > 1 else []
        run = [_stream_orch()] if checkout is None else [sys.executable, "-m", AT, checkout]
        return [*run, "run", str(rendered), "--schemas", str(SCHEMAS), *more]

    return argv


@functools.cache
def _run_command_missing() -> str | None:
    try:
        proc = subprocess.run([_stream_orch(), "run", "--help"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`stream-orch run --help` failed: {exc}"
    return None if proc.returncode == 0 else "`stream-orch run` not available yet"


def unavailable(
    topology: Path, topics: Mapping[str, str], processing: str | None = None
) -> Callable[[], str | None]:
    def check() -> str | None:
        missing = _run_command_missing()
        if missing:
            return missing
        if not topology.exists():
            return f"{topology.relative_to(REPO)} not available yet"
        dummy = {v: f"bench.check.{v.lower()}" for v in (env.TOPOLOGY, *env.FRAUD_TOPICS, env.OUTPUT)}
        try:
            data = render(topology, topics, dummy, processing)
            if processing is not None:
                from stream_orch.topology.models import TopologySpec

                TopologySpec.model_validate(data)  # the override must be a value the engine knows
        except Exception as exc:  # the engine is being written: any failure means "not yet"
            return f"{topology.relative_to(REPO)} does not load: {str(exc).splitlines()[0][:200]}"
        unmapped = [t for t in topics if dummy[topics[t]] not in data["topics"] and topics[t] != env.DLQ]
        if unmapped:
            return (
                f"{topology.relative_to(REPO)} declares no topic {unmapped[0]!r} (entry's topic map is stale)"
            )
        return None

    return check
