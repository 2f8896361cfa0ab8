"""A join's per-source watermarks (:mod:`stream_orch.steps.join`): the sides whose topic a node
of the topology writes take as their watermark the minimum over that writer's source partitions
(:mod:`stream_orch.steps.source_watermarks`), kept in the join's table per partition and side."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stream_orch.steps import source_watermarks as sw
from stream_orch.steps.base import Event, Table
from stream_orch.steps.common import Ticks

if TYPE_CHECKING:
    from stream_orch.steps.join import JoinStepImpl

SOURCES = "\x1dsources."  # per side, with per-source watermarks: {source: [time, heard]}
Slot = tuple[int, str]  # (partition, side)


def ticked(mark: int, times: Ticks | None, before: int | None, heard: Heard, slot: Slot) -> int:
    """``mark`` moved by the times of records an earlier step let go (and watermark records), from
    offsets below ``before`` (all: None), which are then taken off ``times``."""
    if not times:
        return mark
    n = 0
    for offset, t, event in times:
        if before is not None and offset >= before:
            break
        n += 1
        mark = heard.moved(slot, mark, event, t)
    del times[:n]
    return mark


class Heard:
    """A batch's per-source state of the sides whose topic a node of the topology writes (see
    :mod:`stream_orch.steps.source_watermarks`), kept in the join's table per partition and side
    (same changelog, same batch): a side's watermark is then the minimum over those sources."""

    def __init__(self, step: JoinStepImpl, table: Table, now: int) -> None:
        self.step, self.table, self.now = step, table, now
        self.loaded: dict[Slot, sw.Sources] = {}

    def moved(self, slot: Slot, mark: int, event: Event, t: int) -> int:
        """The side's watermark after ``event`` (time ``t``; -1 for a watermark record)."""
        expected = self.step.sources[slot[1]]
        if not expected:
            return t if t > mark else mark
        if sw.hear(self._sources(slot, expected), event.headers, t, self.now, self.step.idle_ms):
            least = self.least(slot)
            return least if least > mark else mark
        return mark

    def least(self, slot: Slot) -> int:
        """The minimum over the side's sources heard from within the idle timeout (-1: none)."""
        since = self.step._since.get(slot[0], self.now)
        least = sw.minimum(self.loaded[slot], self.now, since, self.step.idle_ms)
        return -1 if least is None else least

    def save(self) -> list[Slot]:
        """Write back the sources read in this batch; the slots they belong to."""
        for (partition, side), sources in self.loaded.items():
            self.table.set(SOURCES + side, sources, partition)
        return list(self.loaded)

    def _sources(self, slot: Slot, expected: frozenset[str]) -> sw.Sources:
        sources = self.loaded.get(slot)
        if sources is None:
            partition, side = slot
            self.step._since.setdefault(partition, self.now)
            stored = self.table.get(SOURCES + side, partition)
            sources = self.loaded[slot] = {k: list(v) for k, v in (stored or {}).items()}
            for src in expected:  # expected from the start: one not heard from yet holds the side
                sources.setdefault(src, [-1, self.now])
        return sources
