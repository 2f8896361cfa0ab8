"""``model``: score the batch with a trained model (ONNX through onnxruntime), in one call.

Per record the step only reads its features (a field, or a compiled expression) into one flat
list of numbers; the batch's rows then become one float32 array and the model runs once on it
(``session.run``). So the cost per record is a few dictionary reads, and the model's own cost is
per batch. Where a model file may be, how it is loaded and which input forms fit are in
:mod:`stream_orch.topology.model_files`.

Bad records never stop the batch: a feature that is missing (or null), not a number (a bool
counts as 0/1; a numeric string does not: harmonise it with ``normalize`` first) or not finite
sends its record to the DLQ with ``model_input: <feature> ...``, and the other records are
scored; a model result that is not a finite number sends its record with ``model_output``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from stream_orch.reliability import headers as H
from stream_orch.steps.base import Event, StepContext
from stream_orch.steps.common import StepBuild, StepConfigError, show
from stream_orch.topology.model_files import LoadedModel, ModelFileError, load_model
from stream_orch.topology.models_model import ModelStep

_NUMBER = (int, float, bool)


class ModelStepImpl:
    @classmethod
    def from_spec(cls, spec: ModelStep, build: StepBuild) -> ModelStepImpl:
        try:
            model = load_model(build.topology, spec)
        except ModelFileError as exc:
            raise StepConfigError(f"{build.where}: {exc}") from None
        getters: list[tuple[str, Callable[[dict[str, Any]], Any]]] = []
        codes: list[str] = []  # each feature as code over ``r`` for the fused reader
        namespace: dict[str, Any] = {}
        constants = build.topology.constants
        for feature, source in spec.features().items():
            text = source.strip()
            if text.isidentifier() and text not in constants:  # a field: read it directly
                getters.append((feature, _field_getter(text)))
                codes.append(f"r.get({text!r})")
            else:
                expr = build.expression(source, f"input {feature}")
                getters.append((feature, expr.fn))
                codes.append(expr.body)
                namespace.update(expr.fn.__globals__)
        fused = _fuse(codes, namespace)
        return cls(model, getters, output=spec.output, take=spec.take, name=build.name, fused=fused)

    def __init__(
        self,
        model: LoadedModel,
        getters: list[tuple[str, Callable[[dict[str, Any]], Any]]],
        *,
        output: str,
        take: str = "probability",
        name: str = "model",
        fused: Callable[..., None] | None = None,
    ) -> None:
        """``fused``: all features of a batch as one function (the fast path, :func:`_fuse`; the
        getters read them again, one by one, for a record it fails on or finds a feature not an
        int or float for, and say which feature and why)."""
        import numpy as np  # with onnxruntime, in the `models` extra; loading the model needed it

        self._np = np
        self.name = name
        self.model = model
        self._getters = tuple(getters)
        self._fused = fused
        self._output = output
        self._label = take == "label"
        self._timings: list[tuple[str, float]] = []
        self.lineage_headers = [
            (H.MODEL_NAME, model.name.encode()),
            (H.MODEL_VERSION, model.version.encode()),
            (H.MODEL_SHA256, model.sha256.encode()),
        ]

    def drain_timings(self) -> list[tuple[str, float]]:
        out, self._timings = self._timings, []
        return out

    def _features(self, events: list[Event], ctx: StepContext) -> tuple[list[Event], list[Any]]:
        """The events whose features are all numbers, and their features in one flat list."""
        kept: list[Event] = []
        flat: list[Any] = []
        if self._fused is not None:
            self._fused(events, kept.append, flat.extend, lambda event: self._read(event, ctx, kept, flat))
        else:
            for event in events:
                self._read(event, ctx, kept, flat)
        return kept, flat

    def _read(self, event: Event, ctx: StepContext, kept: list[Event], flat: list[Any]) -> None:
        """One record's features read one by one: into ``kept`` and ``flat``, or the record
        rejected with the feature that failed and why."""
        record = event.value
        row = []
        feature = ""
        try:
            for feature, get in self._getters:
                value = get(record)
                if value.__class__ is not float and value.__class__ is not int:
                    if value is None:
                        raise _Bad(f"model_input: {feature} is missing")
                    if not isinstance(value, _NUMBER):
                        raise _Bad(f"model_input: {feature} is not a number (got {show(value)})")
                row.append(value)
        except _Bad as exc:
            ctx.reject(event, str(exc))
            return
        except Exception as exc:  # an expression that cannot be evaluated for this record
            ctx.reject(event, f"model_input: {feature}: {exc}", exc)
            return
        flat.extend(row)
        kept.append(event)

    async def run(self, events: list[Event], ctx: StepContext) -> list[Event]:
        if not events:
            return events
        started = time.perf_counter()
        np = self._np
        events, flat = self._features(events, ctx)
        if not events:
            return events
        n = len(self._getters)
        try:
            with np.errstate(over="ignore"):  # a number beyond float32 becomes inf: rejected below
                x = np.array(flat, dtype=np.float32).reshape(len(events), n)
        except OverflowError:  # an int beyond float range: found per row below
            x = np.array([float(v) if abs(v) < 1e39 else np.inf for v in flat], dtype=np.float32)
            x = x.reshape(len(events), n)
        finite = np.isfinite(x).all(axis=1)
        if not finite.all():
            events = self._drop_rows(events, x, ~finite, ctx)
            x = x[finite]
            if not events:
                return events
        model = self.model
        if model.form == "matrix":
            feed = {model.input_names[0]: x}
        else:
            feed = {name: x[:, i : i + 1] for i, name in enumerate(model.input_names)}
        result = model.session.run([model.output_name], feed)[0]
        if model.column is not None and result.ndim == 2:
            result = result[:, model.column]
        elif result.ndim == 2:
            result = result[:, 0]
        out = events
        if not self._label:
            ok = np.isfinite(result)
            if not ok.all():
                out = []
                for event, good, value in zip(events, ok.tolist(), result.tolist(), strict=True):
                    if good:
                        out.append(event)
                    else:
                        ctx.reject(event, f"model_output: the model returned {value} (not a finite number)")
                result = result[ok]
        field = self._output
        for event, value in zip(out, result.tolist(), strict=True):
            event.value[field] = value
        self._timings.append((model.name, time.perf_counter() - started))
        return out

    def _drop_rows(self, events: list[Event], x: Any, bad: Any, ctx: StepContext) -> list[Event]:
        """Reject the events whose row has a feature that is not finite (inf, nan, beyond float32)."""
        names = [feature for feature, _ in self._getters]
        kept = []
        np = self._np
        for event, is_bad, row in zip(events, bad.tolist(), x, strict=True):
            if is_bad:
                feature = names[int(np.argmin(np.isfinite(row)))]
                ctx.reject(event, f"model_input: {feature} is not a finite number in float32")
            else:
                kept.append(event)
        return kept


class _Bad(Exception):
    """A record whose feature cannot be used; the message is the reason."""


def _field_getter(name: str) -> Callable[[dict[str, Any]], Any]:
    def get(record: dict[str, Any]) -> Any:
        return record.get(name)

    return get


def _fuse(codes: list[str], namespace: dict[str, Any]) -> Callable[..., None]:
    """The features of a batch's records read by one generated function: a call per feature was
    about a third of the step, and a call per record and the loop testing each value's class a
    third of what was left. ``fused(events, keep, extend, again)`` hands each record whose
    features are all ints or floats to ``keep`` and its features to ``extend``, and any other
    record to ``again`` (which reads them one by one and names what failed). ``codes`` are
    field reads and compiled expression bodies (the expression compiler's whitelisted output,
    over globals with process-unique names)."""
    names = [f"f{i}" for i in range(len(codes))]
    numbers = " and ".join(f"({n}.__class__ is __float or {n}.__class__ is __int)" for n in names)
    lines = [
        "def features(events, keep, extend, again):",
        "    for event in events:",
        "        r = event.value",
        "        try:",
        *(f"            {name} = {code}" for name, code in zip(names, codes, strict=True)),
        "        except __Exception:",
        "            again(event)",
        "            continue",
        f"        if {numbers}:",
        f"            extend(({''.join(f'{n}, ' for n in names)}))",
        "            keep(event)",
        "        else:",
        "            again(event)",
    ]
    namespace = {**namespace, "__builtins__": {}, "__Exception": Exception, "__float": float, "__int": int}
    exec(compile("\n".join(lines) + "\n", "<model features>", "exec"), namespace)
    return namespace["features"]
