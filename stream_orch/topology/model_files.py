"""The model files of ``model`` steps: where one may be, how it is loaded, what it must look like.

A model file is trusted like the topology (its author ships it with the topology), but which file
belongs to the topology must be explicit, as for python modules: ``file:`` is relative to the
topology file's folder (or a folder of ``python_paths``), and a path leading out of it (``..``, an
absolute path, a symlink pointing elsewhere) is refused. ONNX is a data format: onnxruntime
builds the graph from it and runs no code of the file. The bytes are read once, hashed (the
lineage) and handed to onnxruntime, so a model cannot pull in "external data" files either.

A model fits a step's features (``n`` of them, in order) in one of two forms:

* **matrix**: one float input of shape ``[N, n]`` (what skl2onnx writes for a scikit-learn model);
  when the file names its features (metadata ``feature_names``, comma separated: the training
  script writes it) they must be the step's, in order;
* **columns**: one float input of shape ``[N, 1]`` (or ``[N]``) per feature, named as the feature.

``validate`` (:func:`model_problems`) and the worker (:func:`load_model`, when the step is built)
apply the same checks, so a topology whose model does not fit is refused before it runs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from stream_orch.errors import UserError
from stream_orch.topology.models import TopologySpec
from stream_orch.topology.models_model import ModelStep
from stream_orch.topology.python_modules import PythonPlaces

__all__ = ["MODEL_HINT", "LoadedModel", "ModelFileError", "load_model"]

MODEL_HINT = (
    "a model step reads an ONNX file inside the topology file's folder; its inputs are one float "
    "[N, <features>] tensor or one float [N, 1] tensor per feature named as it "
    "(scripts/train_fraud_model.py shows how to export one with skl2onnx)"
)
FEATURE_NAMES = "feature_names"  # metadata key: the features of a matrix input, comma separated
_FLOAT = "tensor(float)"


class ModelFileError(UserError):
    """A model file that is not allowed, cannot be loaded, or does not fit its step."""


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A model ready to run: its session and how the step feeds it and reads it."""

    session: Any  # onnxruntime.InferenceSession
    name: str
    version: str
    sha256: str  # the first 12 hex digits of the file's SHA-256
    form: Literal["matrix", "columns"]
    input_names: tuple[str, ...]  # matrix: the one input; columns: one per feature, in feature order
    output_name: str
    column: int | None  # probability: the column of the output to take (None: the output is 1-d)


def model_file(spec: TopologySpec, file: str) -> Path:
    """The model file ``file`` names, resolved: the first of ``<folder>/<file>`` over the topology
    file's folder and its ``python_paths`` (a copy of a topology made elsewhere lists the
    original's folder there); :class:`ModelFileError` when it is an absolute path, leads out of
    its folder, or is in none of them."""
    folders = PythonPlaces.of(spec).folders
    if Path(file).is_absolute():
        raise ModelFileError(f"model file `{file}` is an absolute path: give it relative to {folders[0]}")
    for folder in folders:
        path = (folder / file).resolve()
        if not path.is_relative_to(folder):
            raise ModelFileError(f"model file `{file}` is outside the topology's folder {folder}")
        if path.is_file():
            return path
    shown = ", ".join(str(f) for f in folders)
    raise ModelFileError(
        f"model file `{file}` does not exist in the topology's folder or python_paths ({shown})"
    )


def _shape(arg: Any) -> str:
    dims = ["N" if not isinstance(d, int) else str(d) for d in (arg.shape or [])]
    return f"{arg.type.removeprefix('tensor(').removesuffix(')')}[{', '.join(dims)}]"


def _describe(args: list[Any]) -> str:
    return ", ".join(f"`{a.name}` {_shape(a)}" for a in args)


def _fits_matrix(arg: Any, n: int) -> bool:
    shape = arg.shape or []
    return arg.type == _FLOAT and len(shape) == 2 and (not isinstance(shape[1], int) or shape[1] == n)


def _fits_column(arg: Any) -> bool:
    shape = arg.shape or []
    return arg.type == _FLOAT and (len(shape) == 1 or (len(shape) == 2 and shape[1] in (1, None)))


def _inputs(session: Any, features: list[str], metadata: dict[str, str]) -> tuple[str, tuple[str, ...]]:
    """The form and the input names feeding ``features``, or :class:`ModelFileError` saying why not."""
    args = session.get_inputs()
    n = len(features)
    if len(args) == 1 and _fits_matrix(args[0], n) and (n > 1 or args[0].name not in features):
        named = metadata.get(FEATURE_NAMES)
        if named is not None:
            names = [s.strip() for s in named.split(",")]
            if names != features:
                raise ModelFileError(
                    f"the model's features are {', '.join(names)} (its metadata `{FEATURE_NAMES}`), "
                    f"but the step gives {', '.join(features)}: name the inputs as the model does, "
                    "in its order"
                )
        return "matrix", (args[0].name,)
    by_name = {a.name: a for a in args}
    if set(by_name) == set(features) and all(_fits_column(a) for a in args):
        return "columns", tuple(features)
    if len(args) == 1 and args[0].type == _FLOAT and len(args[0].shape or []) == 2:
        raise ModelFileError(
            f"the model's input {_describe(args)} takes {args[0].shape[1]} features but the step "
            f"gives {n} ({', '.join(features)})"
        )
    missing = [f for f in features if f not in by_name]
    extra = [a for a in args if a.name not in features]
    detail = []
    if missing:
        detail.append(f"no model input named {', '.join(f'`{m}`' for m in missing)}")
    if extra:
        detail.append(f"model inputs {_describe(extra)} not fed")
    wrong = [a for a in args if a.name in features and not _fits_column(a)]
    if wrong:
        detail.append(f"inputs {_describe(wrong)} are not float [N, 1]")
    raise ModelFileError(
        f"the model's inputs ({_describe(args)}) do not match the step's features "
        f"({', '.join(features)}): {'; '.join(detail)}"
    )


def _output(session: Any, step: ModelStep) -> tuple[str, int | None]:
    """The output the step reads and, for a probability, its column."""
    outs = session.get_outputs()
    if step.take == "label":
        chosen = next((o for o in outs if o.name == "label"), None) or next(
            (o for o in outs if o.type.startswith("tensor(") and o.type != _FLOAT), outs[0]
        )
        if not chosen.type.startswith("tensor("):
            raise ModelFileError(f"the model's output `{chosen.name}` is a {chosen.type}, not a tensor")
        return chosen.name, None
    floats = [o for o in outs if o.type in (_FLOAT, "tensor(double)")]
    chosen = next((o for o in floats if "prob" in o.name.lower()), None) or (
        floats[0] if len(floats) == 1 else None
    )
    if chosen is None:
        shown = _describe(outs)
        hint = (
            " (skl2onnx: convert with options={id(model): {'zipmap': False}})"
            if any(o.type.startswith("seq(") for o in outs)
            else ""
        )
        raise ModelFileError(f"no float tensor of probabilities among the model's outputs {shown}{hint}")
    shape = chosen.shape or []
    if len(shape) == 1:
        return chosen.name, None
    width = shape[1] if len(shape) == 2 else None
    if isinstance(width, int) and width == 1:
        return chosen.name, 0
    if isinstance(width, int) and step.class_index >= width:
        raise ModelFileError(
            f"class_index {step.class_index} but the model's output `{chosen.name}` has {width} columns"
        )
    return chosen.name, step.class_index


def load_model(spec: TopologySpec, step: ModelStep) -> LoadedModel:
    """The step's model, loaded and checked; :class:`ModelFileError` with one line otherwise."""
    path = model_file(spec, step.file)
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelFileError(
            "the model step needs onnxruntime and numpy: pip install 'stream-orch[models]'"
        ) from None
    data = path.read_bytes()
    options = ort.SessionOptions()
    # one thread per model: a worker runs one partition's batch at a time on one core, and
    # onnxruntime's own pool would compete with the event loop for it
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: its warnings are not the user's business
    try:
        session = ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"model file `{step.file}` cannot be loaded as ONNX: {first[:300]}") from None
    meta = session.get_modelmeta()
    metadata = dict(meta.custom_metadata_map or {})
    try:
        form, input_names = _inputs(session, list(step.features()), metadata)
        output_name, column = _output(session, step)
    except ModelFileError as exc:
        raise ModelFileError(f"model file `{step.file}`: {exc}") from None
    return LoadedModel(
        session=session,
        name=step.name or path.stem,
        version=step.version if step.version is not None else str(meta.version),
        sha256=hashlib.sha256(data).hexdigest()[:12],
        form=form,
        input_names=input_names,
        output_name=output_name,
        column=column,
    )
