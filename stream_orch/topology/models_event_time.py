"""The event-time steps' models: emitting windows and stream joins (imported by
:mod:`stream_orch.topology.models`, whose rules they follow: pydantic models are the single source
of truth of validation, JSON Schema and the reference docs)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stream_orch.topology.durations import DurationMs
from stream_orch.topology.models_time import Aggregation, Bound, WindowFunction
from stream_orch.topology.naming import Name, TopicName


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    writes_table: ClassVar[bool] = False


class WindowStep(_Model):
    """Tumbling, hopping or session windows per key whose results are emitted as records.

    The step replaces the stream: the records it reads are absorbed (counted as dropped,
    `windowed`) and the routes receive window results `{<key>: ..., window_start, window_end,
    <as>: ...}` (or one field per `aggregate` name; epoch ms; for a session the times of its first
    and last record). A window closes when the partition's watermark (its greatest event time
    read so far) reaches `window_end + grace` (a session: once it passes its last record's time + gap
    + grace); event time moves only with records.
    """

    step: Literal["window"]
    writes_table: ClassVar[bool] = True
    table: Name = Field(description="Table holding the open windows and the partition's watermark.")
    key: str = Field(description="Field that groups records (e.g. merchant_id); the input topic's key.")
    time_field: str = Field("ts", description="Event-time field, epoch ms (negative times are invalid).")
    kind: Literal["tumbling", "hopping", "session"] = Field(
        description="tumbling: [s, s + size) with s a multiple of size; hopping: every [s, s + size) with s "
        "a multiple of advance that holds the record; session: records at most `gap` apart, per key "
        "(Kafka Streams' rule)."
    )
    size: DurationMs | None = Field(None, description="tumbling, hopping: window length, > 0.")
    advance: DurationMs | None = Field(
        None, description="hopping: distance between window starts, 0 < advance <= size."
    )
    gap: DurationMs | None = Field(None, description="session: inactivity that ends a session, > 0.")
    grace: DurationMs = Field(
        0, description="How long after its end a window still takes records arriving out of order (>= 0)."
    )
    function: WindowFunction = Field(
        "count",
        description="With `as`, what it receives: count (int); sum (int while every value is an int, else "
        "float); min, max (numbers); avg (float); first, last (the value of the record with the least, "
        "greatest time); latest (as last); collect (the values in arrival order, at most 1000 kept); "
        "count_distinct (the number of distinct values, at most 10000 counted).",
    )
    field: str | None = Field(None, description="With `as`: the field aggregated (every function but count).")
    aggregate: dict[str, Aggregation] | None = Field(
        None,
        description="Several results per window instead of `as`/`function`/`field`: result field to "
        "`count` or to `{<function>: <field>}`, e.g. `{n: count, first_hub: {first: hub}, total: {sum: "
        "amount}}`; the functions are those of `function`. A record missing one of the fields (or with "
        "a non-number for sum/min/max/avg) is rejected.",
    )
    emit: Literal["on_close", "on_update"] = Field(
        "on_close",
        description="on_close: one final record per window once it closes; on_update: a record with the "
        "window's new result for every record that changes it.",
    )
    late: Literal["drop", "dlq"] = Field(
        "drop",
        description="A record whose windows have all closed (late beyond grace): drop it, counted as "
        "`late_event`, or send it to the DLQ with reason `late_event`.",
    )
    as_: str | None = Field(
        None, alias="as", description="Field of the result record that receives `function`'s result."
    )
    idle_timeout: DurationMs = Field(
        60_000,
        description="When the input is written by another node of the topology (watermarks: per_source): "
        "a source partition of that node not heard from (records or watermark records) for this long, by the "
        "worker's clock, is left out of the minimum, so an idle source does not hold windows open for ever. "
        "Silence counts while the partition hears something: a pause of every source at once (a broker "
        "outage, the writer stopped) counts for at most a quarter of this.",
    )

    def results(self) -> dict[str, tuple[str, str | None]]:
        """Each result field with the function computing it and the field it reads."""
        if self.aggregate is None:
            return {self.as_ or "": (self.function, self.field)}
        return {n: ("count", None) if a == "count" else a.function_field() for n, a in self.aggregate.items()}

    @model_validator(mode="after")
    def _kind_fields(self) -> WindowStep:
        if self.kind == "session":
            if not self.gap:
                raise ValueError("a session window needs `gap` > 0")
            if self.size is not None or self.advance is not None:
                raise ValueError("`size`/`advance` belong to tumbling and hopping windows, not sessions")
        else:
            if not self.size:
                raise ValueError(f"a {self.kind} window needs `size` > 0")
            if self.gap is not None:
                raise ValueError("`gap` belongs to session windows")
            if self.kind == "hopping" and not (self.advance and self.advance <= self.size):
                raise ValueError("a hopping window needs `advance` with 0 < advance <= size")
            if self.kind == "tumbling" and self.advance is not None:
                raise ValueError("`advance` belongs to hopping windows")
        if self.aggregate is not None:
            if self.as_ is not None or {"function", "field"} & self.model_fields_set:
                raise ValueError("`aggregate` replaces `as`, `function` and `field`: use one form")
            if not self.aggregate:
                raise ValueError("`aggregate` needs at least one result")
            clash = {self.key, "window_start", "window_end"} & set(self.aggregate)
            if clash:
                raise ValueError(f"`aggregate` names a result `{min(clash)}`, a field the window sets itself")
            return self
        if self.as_ is None:
            raise ValueError("a window needs `as` (one result) or `aggregate` (several)")
        if self.function != "count" and not self.field:
            raise ValueError(f"window function {self.function!r} needs `field`")
        return self


class JoinStep(_Model):
    step: Literal["join"]
    writes_table: ClassVar[bool] = True
    topic: TopicName = Field(
        description="The other stream, co-partitioned with the node's input (same partition count and "
        "key). Its records enter the node at this step (the steps before it see only the input's)."
    )
    table: Name = Field(description="Table buffering both sides until event time passes their bound.")
    key: str = Field(description="Field of the input's records that must equal the other side's.")
    other_key: str | None = Field(None, description="Field of the other side's records (default: `key`).")
    time_field: str = Field("ts", description="Event-time field of both sides, epoch ms.")
    kind: Literal["interval", "as_of"] = Field(
        "interval",
        description="interval: every other-side record with time in [t - before, t + after] matches, "
        "whichever arrives first; as_of: the latest other-side record at or before t, within tolerance.",
    )
    before: Bound = Field(
        0,
        description="interval: how long before this record's time a match may be; or `{field, max}`: the "
        "earliest time a match may have, from a field of each input record.",
    )
    after: Bound = Field(
        0,
        description="interval: how long after this record's time a match may be; or `{field, max}`: the "
        "latest time a match may have, from a field of each input record (e.g. `{field: promised_by, max: "
        "7d}`).",
    )
    tolerance: DurationMs | None = Field(
        None, description="as_of: how old the other-side record may be (unbounded when unset)."
    )
    how: Literal["inner", "left"] = Field(
        "inner",
        description="left: an input record without a match is emitted once its bound has passed "
        "(interval: event time beyond t + after + grace; as_of: at once), with `status_as` = 'unmatched' "
        "and the other side's declared fields (`fields`, else its schema's) null.",
    )
    grace: DurationMs = Field(
        0,
        description="interval: how late (out of order within its own topic) a record of either side may "
        "arrive: one whose side's time is already past its window's end (t + after for the input, t + "
        "before for the other topic) plus grace matches nothing and is dropped as `late_event` (Kafka "
        "Streams' rule); a record waits for the other side's time to pass its bound plus grace. as_of: "
        "how long past its tolerance the other side's record is kept for input records out of order.",
    )
    fields: list[str] | None = Field(
        None,
        description="Other-side fields copied into a match (all when unset); with `fields` or a schema "
        "on the other topic, a declared field the other record lacks is null.",
    )
    prefix: str = Field("", description="Prefix for the copied fields.")
    overwrite: list[str] = Field(
        default_factory=list,
        description="Fields of this side that the other side's copied fields may overwrite in a match "
        "(lint refuses any other collision: set `prefix`, or name the field here).",
    )
    status_as: str = Field(
        "join_status", description="Field set to 'matched' or 'unmatched' on every record the join emits."
    )

    @model_validator(mode="after")
    def _kind_fields(self) -> JoinStep:
        if self.kind == "as_of" and (self.before or self.after):
            raise ValueError("`before`/`after` belong to interval joins; as_of takes `tolerance`")
        if self.kind == "interval" and self.tolerance is not None:
            raise ValueError("`tolerance` belongs to as_of joins; interval takes `before`/`after`")
        return self
