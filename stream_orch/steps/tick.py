"""``tick``: the first step of a scheduled node as the engine runs it
(:mod:`stream_orch.topology.schedule_expand`); never written in a topology file.

Its input is tick records, ``{"tick": <epoch ms>}``. For each, it fires the ticks that
:func:`~stream_orch.topology.schedule_clock.due_ticks` says are due after the last tick fired
(kept under one key of the internal table, so a tick record read twice fires nothing the second
time) and emits, per tick fired, one event per row of the tables its schedule scans, in key
order, with ``tick_time`` set to the tick. The rows' table key is the event's key.

Table rows are untrusted (a table is fed by a topic): a row that is not a JSON object is
skipped and counted (dropped as ``malformed_row``); a row that lacks what a later step needs
goes to the DLQ from that step with its reason and its bytes (the row as JSON). A malformed
tick record (no integer ``tick``) goes to the DLQ as ``malformed_tick``. Nothing here stops
the node.
"""

from __future__ import annotations

from typing import Any

import orjson

from stream_orch.steps.base import Event, StepContext
from stream_orch.steps.common import StepBuild
from stream_orch.topology.models_schedule import TICK_FIELD, ScanSpec, TickStep
from stream_orch.topology.schedule_clock import Schedule, due_ticks

LAST_KEY = "last_tick"  # the key of the internal table holding the last tick fired


class TickStepImpl:
    @classmethod
    def from_spec(cls, spec: TickStep, build: StepBuild) -> TickStepImpl:
        return cls(spec, name=build.name)

    def __init__(self, spec: TickStep, *, name: str = "tick") -> None:
        self.name = name
        self.table_name = spec.table
        self.catch_up = spec.schedule.catch_up
        self.scans: list[ScanSpec] = spec.schedule.scan
        self.clock: Schedule = spec.schedule.clock()
        self.fired: list[int] = []  # the ticks fired by the last batch
        self.fired_total = 0  # ticks fired since the worker started (metrics)
        self.last_fired: int | None = None  # the latest tick fired (metrics)

    async def run(self, events: list[Event], ctx: StepContext) -> list[Event]:
        state = ctx.table(self.table_name)
        out: list[Event] = []
        self.fired = []
        for event in events:
            tick = event.value.get("tick") if isinstance(event.value, dict) else None
            if tick.__class__ is not int or tick < 0:
                ctx.reject(event, "malformed_tick: a tick record needs an integer `tick` (epoch ms)")
                continue
            last = state.get(LAST_KEY, event.partition)
            if last.__class__ is not int:
                last = None  # never fired (or a value this step did not write: start afresh)
            fire, new_last = due_ticks(self.clock, last, tick, self.catch_up)
            if new_last != last:
                state.set(LAST_KEY, new_last, event.partition)
            for at in fire:
                out.extend(self._rows(at, event, ctx))
            self.fired.extend(fire)
        if self.fired:
            self.fired_total += len(self.fired)
            self.last_fired = max(self.fired[-1], self.last_fired or 0)
        return out

    def _rows(self, at: int, tick: Event, ctx: StepContext) -> list[Event]:
        out = []
        for scan in self.scans:
            table = ctx.table(scan.table)
            start, end = scan.key_range()
            rows = sorted(table.scan(tick.partition, start, end), key=_key)
            for key, row in rows:
                if not isinstance(row, dict):
                    ctx.drop(tick, "malformed_row")
                    continue
                value: dict[str, Any] = {**row, TICK_FIELD: at}
                out.append(
                    Event(
                        value,
                        key=key.encode(),
                        raw_value=_bytes(row),
                        topic=tick.topic,
                        partition=tick.partition,
                        offset=tick.offset,
                        timestamp=at,
                        source_topic=tick.source_topic or tick.topic,
                        source_partition=tick.source_partition,
                        source_offset=tick.source_offset,
                    )
                )
        return out


def _key(item: tuple[str, Any]) -> str:
    return item[0]


def _bytes(row: dict[str, Any]) -> bytes | None:
    """The row as JSON, kept as the event's bytes for its dead letter."""
    try:
        return orjson.dumps(row)
    except TypeError:  # not JSON-serialisable (an Avro row with bytes): no bytes to keep
        return None
