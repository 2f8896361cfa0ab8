"""Parts of the window and join steps' models: a window's named results and a join's bound taken
from a field (imported by :mod:`stream_orch.topology.models`, whose rules they follow: pydantic
models are the single source of truth of validation, JSON Schema and the reference docs)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from stream_orch.topology.durations import DurationMs


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


WindowFunction = Literal[
    "count", "sum", "min", "max", "avg", "latest", "collect", "first", "last", "count_distinct"
]


class WindowAggregation(_Model):
    """One result of a window's `aggregate`: exactly one function, with the field it reads."""

    sum: str | None = Field(None, description="Sum of the field (int while every value is an int).")
    min: str | None = Field(None, description="Least value of the field (numbers).")
    max: str | None = Field(None, description="Greatest value of the field (numbers).")
    avg: str | None = Field(None, description="Mean of the field (float).")
    first: str | None = Field(None, description="The field of the record with the least time.")
    last: str | None = Field(None, description="The field of the record with the greatest time.")
    latest: str | None = Field(None, description="As last.")
    collect: str | None = Field(None, description="The field's values in arrival order (at most 1000).")
    count_distinct: str | None = Field(None, description="How many distinct values (at most 10000).")

    def function_field(self) -> tuple[str, str]:
        return next((k, v) for k, v in self.model_dump().items() if v is not None)

    @model_validator(mode="after")
    def _one(self) -> WindowAggregation:
        if len([v for v in self.model_dump().values() if v is not None]) != 1:
            raise ValueError("an aggregation is one function and its field, e.g. `{sum: amount}`")
        return self


class JoinBound(_Model):
    """An interval join's bound taken from each input record: a field holding an event time."""

    field: str = Field(
        description="Field of the input record holding a time (epoch ms): for `after` the latest time a "
        "match may have, for `before` the earliest. A record without it (or with a negative or non-integer "
        "value) is rejected (`missing_field` / `invalid_field`)."
    )
    max: DurationMs = Field(
        description="The furthest the field's time may lie from the record's own (after it for `after`, "
        "before it for `before`); a record beyond is rejected (`invalid_field`). The other side's records "
        "wait for this longest bound, so the table stays bounded."
    )


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(x) for x in error["loc"])
    if error["type"] == "missing":
        return f"`{where}` is required"
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _aggregation(value: Any) -> Any:
    """`count`, or a mapping validated as one :class:`WindowAggregation` (one error, not one per
    form the union allows)."""
    if value == "count" or isinstance(value, WindowAggregation):
        return value
    if isinstance(value, dict):
        try:
            return WindowAggregation.model_validate(value)
        except ValidationError as exc:
            raise ValueError(_first_error(exc)) from None
    raise ValueError(
        f"{value!r}: an aggregation is `count` or `{{<function>: <field>}}`, e.g. `{{sum: amount}}`"
    )


def _bound(value: Any) -> Any:
    """A mapping is a :class:`JoinBound`, anything else a duration (one error either way)."""
    if isinstance(value, dict):
        try:
            return JoinBound.model_validate(value)
        except ValidationError as exc:
            raise ValueError(f"a bound from a field: {_first_error(exc)}") from None
    return value


Aggregation = Annotated[Literal["count"] | WindowAggregation, BeforeValidator(_aggregation)]
Bound = Annotated[DurationMs | JoinBound, BeforeValidator(_bound)]
