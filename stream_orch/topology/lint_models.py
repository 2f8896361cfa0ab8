"""Lint of ``model`` steps: the file is allowed, loads and fits the step's features
(:mod:`stream_orch.topology.model_files`, the checks the worker applies too), and every field
a feature reads is a field of the records reaching the step."""

from __future__ import annotations

from typing import Protocol

from stream_orch.topology.loader import LoadedTopology, PathTuple, Problem
from stream_orch.topology.model_files import MODEL_HINT, ModelFileError, load_model
from stream_orch.topology.models_model import ModelStep


class _ExpressionCheck(Protocol):
    def _expression(self, path: PathTuple, source: str, avail: set[str] | None, what: str) -> None: ...


def model_fields(
    linter: _ExpressionCheck, path: PathTuple, step: ModelStep, avail: set[str] | None, where: str
) -> set[str] | None:
    """Check each feature's field or expression; the fields after the step (its output added)."""
    for i, (feature, source) in enumerate(step.features().items()):
        at = (*path, "inputs", feature if isinstance(step.inputs, dict) else i)
        linter._expression(at, source, avail, f"{where}, input {feature}")
    return avail | {step.output} if avail is not None else None


def model_problems(loaded: LoadedTopology) -> list[Problem]:
    """``validate``'s checks of every model step's file (loaded, never run). Steps alike (a node
    repeated per region) are checked once: what is wrong with one is wrong with all."""
    problems = []
    checked: dict[str, str | None] = {}
    for name, node in loaded.spec.nodes.items():
        for i, step in enumerate(node.steps):
            if isinstance(step, ModelStep):
                same = step.model_dump_json(exclude={"name", "version"})
                if same not in checked:
                    try:
                        load_model(loaded.spec, step)
                        checked[same] = None
                    except ModelFileError as exc:
                        checked[same] = str(exc)
                reason = checked[same]
                if reason is not None:
                    where = ("nodes", name, "steps", i, "file")
                    message = f"node `{name}`, step model: {reason}"
                    problems.append(loaded.problem(where, message, MODEL_HINT))
    return problems
