"""Scheduled nodes: a node that runs on a clock instead of reading a topic (imported by
:mod:`stream_orch.topology.models`, whose rules it follows: pydantic models are the single source
of truth of validation, JSON Schema and the reference docs).

A scheduled node has ``schedule:`` instead of ``input:``. At each tick it reads the tables its
``scan`` names and sends each row, with the field ``tick_time``, through its steps and routes.
How the engine runs it (a one-partition internal topic of ticks, the last fired tick in a
changelog): :mod:`stream_orch.topology.schedule_expand`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stream_orch.topology.durations import DurationMs
from stream_orch.topology.naming import Name
from stream_orch.topology.schedule_clock import CatchUp, CronError, Schedule, parse_cron, zone

#: The field each row of a tick carries: the tick's time, epoch ms UTC (expressions read it).
TICK_FIELD = "tick_time"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ScanSpec(_Model):
    """A table a tick reads: all of it, the keys with a prefix, or a key range."""

    table: Name = Field(description="Table fed by a topic (`tables.<name>.topic`) whose rows the tick reads.")
    prefix: str | None = Field(None, description="Only the keys that start with this text.")
    from_: str | None = Field(
        None, alias="from", description="Only the keys at or after this one (text order)."
    )
    to: str | None = Field(None, description="Only the keys before this one (text order).")

    @model_validator(mode="after")
    def _prefix_or_range(self) -> ScanSpec:
        if self.prefix is not None and (self.from_ is not None or self.to is not None):
            raise ValueError("a scan has `prefix` or a range (`from`/`to`), not both")
        return self

    def key_range(self) -> tuple[str, str]:
        """``[start, end)`` of the keys read (the highest code point ends an open range)."""
        if self.prefix is not None:
            return self.prefix, self.prefix + "\U0010ffff"
        return self.from_ or "", self.to if self.to is not None else "\U0010ffff"


class ScheduleSpec(_Model):
    """When a scheduled node ticks, what it reads, and what it does about ticks it missed."""

    every: DurationMs | None = Field(
        None,
        description="Tick at every multiple of this since the Unix epoch (UTC): `every: 1m` ticks on whole "
        "minutes, `every: 1h` on whole UTC hours (local hours: use `cron`).",
    )
    cron: str | None = Field(
        None,
        description="Tick at the times of a five-field cron expression (minute hour day-of-month month "
        'day-of-week; `*`, `a,b`, `a-b`, `*/n`, names such as `mon`), e.g. `"0 * * * *"` every hour, '
        '`"30 6 * * mon-fri"` at 06:30 on weekdays. A local time that a daylight-saving change skips does '
        "not tick; one it repeats ticks once.",
    )
    timezone: str = Field("UTC", description="IANA time zone of `cron` (e.g. Europe/Paris).")
    catch_up: CatchUp = Field(
        "latest",
        description="Ticks missed while no worker ran the node (downtime): `latest` fires one tick for "
        "them all, at once (a tick reads the tables as they are now, so the missed ticks would all read the "
        "same rows); `all` fires each missed tick, oldest first (for outputs counted per tick; at most 1000 "
        "per period, the rest in the next periods); `skip` fires none and resumes at the next tick.",
    )
    scan: list[ScanSpec] = Field(
        min_length=1,
        description="Tables each tick reads, in order: a name (the whole table) or `{table, prefix}` / "
        "`{table, from, to}`. Every row, with the field `tick_time` (the tick's time, epoch ms UTC) added, "
        "goes through the node's steps and routes; rows are read in key order.",
    )

    @field_validator("scan", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if isinstance(value, str | dict):
            value = [value]
        if isinstance(value, list):
            return [{"table": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_cron(value)
            except CronError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zone(value)
        except CronError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _every_or_cron(self) -> ScheduleSpec:
        if (self.every is None) == (self.cron is None):
            raise ValueError("a schedule has either `every` or `cron`")
        if self.every is not None and self.every <= 0:
            raise ValueError("`every` must be more than 0")
        if self.every is not None and "timezone" in self.model_fields_set and self.timezone != "UTC":
            raise ValueError("`timezone` applies to `cron`; `every` ticks on multiples of its period in UTC")
        return self

    def clock(self) -> Schedule:
        return Schedule(every_ms=self.every, cron=self.cron, timezone=self.timezone)

    def describe(self) -> str:
        """``every 1m`` or ``cron 0 * * * * Europe/Paris``: for the graph and /status."""
        from stream_orch.topology.durations import format_duration_ms

        if self.every is not None:
            return f"every {format_duration_ms(self.every)}"
        return f"cron {self.cron}" + (f" {self.timezone}" if self.timezone != "UTC" else "")


class PunctuateSpec(_Model):
    """Wall-clock punctuation of a node that reads a topic (Kafka Streams' punctuators): closes
    the windows of an input partition that stopped receiving records."""

    every: DurationMs = Field(
        description="When an input partition of the node has had no record for this long (by the "
        "owning worker's clock), the worker writes a punctuation record to it: a watermark record "
        "(no value) with the header `so.punct: <now - lateness>` (epoch ms). The node's window steps "
        "move that partition's watermark to that time, so the windows it passed close and are emitted, "
        "in the batch (and transaction) that reads the punctuation. Every other step passes over it, "
        "as over any watermark record; consumers outside the topology see a record without a value."
    )
    lateness: DurationMs = Field(
        0,
        description="How far behind the wall clock event time may be: the punctuation moves the "
        "watermark to now - lateness (never back). A record arriving later than that is late, as any "
        "record behind the watermark.",
    )

    @model_validator(mode="after")
    def _positive(self) -> PunctuateSpec:
        if self.every <= 0:
            raise ValueError("`punctuate.every` must be more than 0")
        return self


class TickStep(_Model):
    """The first step of a scheduled node as the engine runs it (never written in a topology
    file): fires the due ticks of the tick records it reads, each tick's rows going on."""

    step: Literal["tick"]
    writes_table: ClassVar[bool] = True
    table: Name = Field(description="Internal table that keeps the last tick fired.")
    schedule: ScheduleSpec
