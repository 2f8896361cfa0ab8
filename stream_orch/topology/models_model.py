"""The ``model`` step's model (imported by :mod:`stream_orch.topology.models`, whose rules it
follows: pydantic models are the single source of truth of validation, JSON Schema and the
reference docs)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

FeatureSource = Annotated[str, Field(min_length=1)]


class ModelStep(BaseModel):
    """Scores every record with a trained model file (ONNX), the whole batch in one call.

    The records' features are gathered into one float32 array and the model runs once per batch
    (onnxruntime, one thread). A record whose feature is missing, not a number or not finite goes
    to the DLQ with reason `model_input: <feature> ...`; a record for which the model returns no
    finite number goes with `model_output`. The model's name, version and file hash (sha256, first
    12 hex digits) are in the lineage headers `so.model.name`, `so.model.version`, `so.model.sha256`
    of the node's outputs. `validate` and the worker refuse a model file that cannot be loaded or
    whose inputs do not match `inputs`.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    step: Literal["model"]
    file: str = Field(
        min_length=1,
        description="The .onnx file, relative to the topology file's folder, else to a folder of "
        "`python_paths` (an absolute path, or one leading out of its folder once symlinks are resolved, is "
        "refused). Loading an ONNX file runs no code.",
    )
    inputs: dict[str, FeatureSource] | list[str] = Field(
        description="The model's features in its input order: a map of feature name to a field or an "
        'expression computing it (e.g. `{amount_ratio: amount_eur / avg_amount, foreign: "1 if country '
        '!= home_country else 0"}`), or a list of field names. Booleans count as 0/1. The model must '
        "have either one float input of shape [N, <number of features>] (what skl2onnx writes for a "
        "scikit-learn model) or one float input of shape [N, 1] per feature, named as the features.",
    )
    output: str = Field(description="Field that receives the result.")
    take: Literal["probability", "label"] = Field(
        "probability",
        description="probability: the probability of class `class_index` (a float in [0, 1]; a model "
        "with one output takes its value); label: the predicted label (int or string).",
    )
    class_index: int = Field(
        1, ge=0, description="probability: which class's probability (column of the probability output)."
    )
    name: str | None = Field(None, description="The model's name in the lineage (default: the file's stem).")
    version: str | None = Field(
        None, description="The model's version in the lineage (default: the file's model_version)."
    )

    @field_validator("inputs")
    @classmethod
    def _some_inputs(cls, value: dict[str, str] | list[str]) -> dict[str, str] | list[str]:
        if not value:
            raise ValueError("a model needs at least one input")
        if isinstance(value, list) and len(set(value)) != len(value):
            raise ValueError("`inputs` names a field twice")
        return value

    def features(self) -> dict[str, str]:
        """Feature name -> the field or expression giving it, in the model's input order."""
        return dict(self.inputs) if isinstance(self.inputs, dict) else {f: f for f in self.inputs}
