"""The ``aggregate`` step's model (imported by :mod:`stream_orch.topology.models`, whose rules it
follows: pydantic models are the single source of truth of validation, JSON Schema and the
reference docs). With ``window`` it is a sliding event-time window per key; without, a running
aggregate (Kafka Streams' KTable aggregate): one accumulator per key, over every record of the key.
Several results take the window step's form (:data:`Aggregation`)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stream_orch.topology.durations import DurationMs
from stream_orch.topology.models_expression import Expression
from stream_orch.topology.models_time import Aggregation
from stream_orch.topology.naming import Name

#: the window functions a sliding window computes (collect's order would be time, not arrival)
SLIDING_FUNCTIONS = ("count", "sum", "min", "max", "avg", "first", "last", "latest", "count_distinct")
#: the functions a running aggregate keeps in constant size per key (collect and count_distinct
#: would grow with the key's records)
RUNNING_FUNCTIONS = ("count", "sum", "min", "max", "avg", "first", "last", "latest")


class AggregateStep(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    step: Literal["aggregate"]
    writes_table: ClassVar[bool] = True
    table: Name = Field(description="Table holding the state (the window's entries, or the running result).")
    key: str = Field(description="Field that groups events (e.g. account_id).")
    window: DurationMs | None = Field(
        None,
        description="Sliding event-time window: events with time in (t - window, t]. Without it the "
        "aggregate is a running one (a Kafka Streams KTable aggregate): over every record of the key "
        "since the start, one accumulator per key in the table, updated per record in arrival order "
        "(first and last are the first and last record read; no time is read, so no `time_field`). "
        "Its functions: count, sum, min, max, avg, first, last, latest. Counted once with "
        "exactly_once; with at_least_once a batch replayed after a crash is counted again.",
    )
    function: Literal["count", "sum", "min", "max", "avg"] = Field(
        "count",
        description="What `as` receives, over the window's records: count (int); sum (int while every "
        "value is an int, else float; 0 for an empty window); min, max (the values' type); avg (float); "
        "min, max and avg are null for an empty window (possible only with `when`).",
    )
    field: str | None = Field(None, description="Field aggregated (not needed for count).")
    time_field: str = Field("ts", description="Event-time field, epoch ms (sliding window only).")
    when: Expression | None = Field(
        None,
        description="Only records for which this is true enter the window (e.g. `channel == 'online'`); "
        "every record still gets the result for its time, over the records that entered.",
    )
    aggregate: dict[str, Aggregation] | None = Field(
        None,
        description="Several results instead of `as`/`function`/`field`: result field to `count` or to "
        "`{<function>: <field>}`, e.g. `{n: count, total: {sum: amount}, first_hub: {first: hub}}`; "
        "functions count, sum, min, max, avg (as for `function`), first and last (the value of the record "
        "with the least, greatest time in the window; latest is last) and count_distinct (at most 10000). "
        "A record missing one of the fields (or with a non-number for sum/min/max/avg) is rejected.",
    )
    as_: str | None = Field(None, alias="as", description="Field that receives the result.")
    idle_timeout: DurationMs = Field(
        60_000,
        description="Sliding window only, when another node of the topology writes the input (watermarks: "
        "per_source): a source partition of that node not heard from for this long, by the worker's clock, "
        "is left out of the watermark that prunes old entries (as a window's `idle_timeout`; a pause of "
        "every source at once counts for at most a quarter of it).",
    )

    def results(self) -> dict[str, tuple[str, str | None]]:
        """Each result field with the function computing it and the field it reads."""
        if self.aggregate is None:
            return {self.as_ or "": (self.function, self.field)}
        return {n: ("count", None) if a == "count" else a.function_field() for n, a in self.aggregate.items()}

    @model_validator(mode="after")
    def _field_needed(self) -> AggregateStep:
        running = self.window is None
        for timed in ("time_field", "idle_timeout"):
            if running and timed in self.model_fields_set:
                raise ValueError(f"a running aggregate (no `window`) reads no time: drop `{timed}`")
        allowed = RUNNING_FUNCTIONS if running else SLIDING_FUNCTIONS
        kind = "by a running aggregate (one value per key)" if running else "over a sliding window"
        if self.aggregate is not None:
            if self.as_ is not None or {"function", "field"} & self.model_fields_set:
                raise ValueError("`aggregate` replaces `as`, `function` and `field`: use one form")
            if not self.aggregate:
                raise ValueError("`aggregate` needs at least one result")
            for name, (function, _field) in self.results().items():
                if function not in allowed:
                    raise ValueError(
                        f"result `{name}`: {function} is not computed {kind} (its functions: "
                        f"{', '.join(allowed)})"
                    )
            return self
        if self.as_ is None:
            raise ValueError("an aggregate needs `as` (one result) or `aggregate` (several)")
        if self.function != "count" and not self.field:
            raise ValueError(f"aggregate function {self.function!r} needs `field`")
        return self
