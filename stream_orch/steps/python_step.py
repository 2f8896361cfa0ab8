"""``python``: call a user function given as ``module:function``.

The function is imported once, when the step is built, from a module the topology allows (its
folder, ``python_paths``, ``python_packages``: :mod:`stream_orch.topology.python_modules`). It may
be sync or ``async``:

* ``batch: false`` (the default): called with each record dict; returns the new dict (it may
  be the same one, changed) or ``None`` to drop the record (``ctx.drop(event,
  "python_filtered")``). An async function's calls for a batch are awaited together with one
  ``asyncio.gather``.
* ``batch: true``: called once with the list of record dicts (awaited once when async); returns
  a list of the same length (dict or ``None`` per record, as above), or ``None`` when it changed
  the dicts in place (all kept).

An exception for a record whose class (or a base class) is named in ``retry_on`` sends it to
``ctx.retry(event, "<ClassName>", error)``; any other goes to ``ctx.reject`` with
``python_error: <ClassName>: <message>``. In batch mode an exception applies to every record of
the batch. A result that is not a dict (or None) is a ``python_error`` too.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from stream_orch.steps.base import Event, StepContext
from stream_orch.steps.common import StepBuild, StepConfigError
from stream_orch.topology.models import PythonStep
from stream_orch.topology.python_modules import PythonModuleError, PythonPlaces


def import_function(path: str, places: PythonPlaces) -> Callable[..., Any]:
    """``"package.module:function"`` -> the function, from a module the topology allows
    (``places``, see :mod:`stream_orch.topology.python_modules`); :class:`StepConfigError` when
    it is not allowed or cannot be loaded."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise StepConfigError(f"python step: {path!r} is not of the form module:function")
    try:
        module = places.import_module(module_name)
    except PythonModuleError as exc:
        raise StepConfigError(f"python step: {exc}") from None
    fn = getattr(module, attr, None)
    if fn is None:
        raise StepConfigError(f"python step: module {module_name!r} has no attribute {attr!r}")
    if not callable(fn):
        raise StepConfigError(f"python step: {path} is not callable")
    return fn


class PythonStepImpl:
    @classmethod
    def from_spec(cls, spec: PythonStep, build: StepBuild) -> PythonStepImpl:
        try:
            function = import_function(spec.function, PythonPlaces.of(build.topology))
        except StepConfigError as exc:
            raise StepConfigError(f"{build.where}: {exc}") from None
        return cls(function, batch=spec.batch, retry_on=spec.retry_on, name=build.name)

    def __init__(
        self,
        function: Callable[..., Any],
        *,
        batch: bool = False,
        retry_on: list[str] | None = None,
        name: str = "python",
    ) -> None:
        self.name = name
        self.fn = function
        self.batch = batch
        self.retry_on = frozenset(retry_on or ())
        self.is_async = inspect.iscoroutinefunction(self.fn) or inspect.iscoroutinefunction(
            getattr(self.fn, "__call__", None)  # noqa: B004 - an object with an async __call__
        )

    def _fail(self, event: Event, exc: BaseException, ctx: StepContext) -> None:
        names = {cls.__name__ for cls in type(exc).__mro__}
        if self.retry_on and not names.isdisjoint(self.retry_on):
            ctx.retry(event, type(exc).__name__, exc)
        else:
            ctx.reject(event, f"python_error: {type(exc).__name__}: {exc}", exc)

    def _accept(self, event: Event, result: Any, ctx: StepContext, out: list[Event]) -> None:
        if result is None:
            ctx.drop(event, "python_filtered")
        elif result.__class__ is dict or isinstance(result, dict):
            event.value = result
            out.append(event)
        else:
            ctx.reject(event, f"python_error: returned {type(result).__name__}, expected a dict or None")

    async def run(self, events: list[Event], ctx: StepContext) -> list[Event]:
        if not events:
            return events
        fn = self.fn
        out: list[Event] = []
        if self.batch:
            try:
                results = fn([e.value for e in events])
                if self.is_async or inspect.isawaitable(results):
                    results = await results
            except Exception as exc:
                for event in events:
                    self._fail(event, exc, ctx)
                return out
            if results is None:
                return events
            if not isinstance(results, list | tuple) or len(results) != len(events):
                got = len(results) if isinstance(results, list | tuple) else type(results).__name__
                for event in events:
                    ctx.reject(
                        event, f"python_error: batch function returned {got} results for {len(events)}"
                    )
                return out
            for event, result in zip(events, results, strict=True):
                self._accept(event, result, ctx, out)
            return out
        if self.is_async:
            results = await asyncio.gather(*(fn(e.value) for e in events), return_exceptions=True)
            for event, result in zip(events, results, strict=True):
                if isinstance(result, BaseException):
                    if not isinstance(result, Exception):
                        raise result
                    self._fail(event, result, ctx)
                else:
                    self._accept(event, result, ctx, out)
            return out
        for event in events:
            try:
                result = fn(event.value)
            except Exception as exc:
                self._fail(event, exc, ctx)
                continue
            if result.__class__ is dict:
                event.value = result
                out.append(event)
            else:
                self._accept(event, result, ctx, out)
        return out
