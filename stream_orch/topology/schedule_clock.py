"""When a scheduled node's ticks fall, and which of them fire after a gap.

Two kinds of schedule, both as a sequence of tick times (epoch ms, UTC):

* ``every: P``: the multiples of P since the Unix epoch (``every: 1m`` ticks on whole UTC
  minutes), so every worker and every restart agrees on the tick times without a stored origin.
* ``cron: "m h dom mon dow"`` in a time zone: the five-field form (``*``, lists ``a,b``, ranges
  ``a-b``, steps ``*/n`` and ``a-b/n``; months and weekdays also by their English three-letter
  names; weekday 0 or 7 is Sunday; when both day-of-month and day-of-week are restricted, a day
  matching either matches, as in Vixie cron). Times are local to the zone: on a spring-forward
  day a local time that does not exist is skipped, and on a fall-back day a local time that
  occurs twice fires once, at its first occurrence.

A small parser of our own rather than a library: the five-field form is short to parse, and the
rule for the daylight-saving days above is ours to state and test (libraries differ on it).

:func:`due_ticks` is the catch-up rule: from the last tick fired and the tick a tick record
announces, the ticks to fire now.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

CatchUp = Literal["latest", "all", "skip"]

#: The most ticks one tick record fires under ``catch_up: all`` (a long downtime with a short
#: period): the rest fire with the next tick records, so no batch grows without bound.
MAX_CATCH_UP = 1000

_FIELDS = (
    ("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7),
)  # fmt: skip
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_NAMES = {
    3: {m: i for i, m in enumerate(_MONTHS, start=1)},
    4: {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
}
_UTC = dt.UTC
# the furthest a cron expression's next time is looked for: Feb 29 on a given weekday can be 28
# years away; beyond that the expression never matches (e.g. `0 0 31 2 *`)
_HORIZON_DAYS = 366 * 29


class CronError(ValueError):
    """A cron expression or time zone that cannot be used; ``str()`` says what and where."""


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day of month is `*`
    any_weekday: bool  # day of week is `*`

    def day_matches(self, day: dt.date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return dom and dow
        return dom or dow


def parse_cron(expression: str) -> Cron:
    """The five fields of ``expression``, or :class:`CronError` naming the field at fault."""
    parts = expression.split()
    if len(parts) != 5:
        raise CronError(
            f"cron `{expression}` has {len(parts)} fields: it needs 5 (minute hour day-of-month month "
            "day-of-week)"
        )
    sets = [_field(text, i) for i, text in enumerate(parts)]
    weekdays = frozenset(d % 7 for d in sets[4])
    return Cron(
        frozenset(sets[0]), frozenset(sets[1]), frozenset(sets[2]), frozenset(sets[3]), weekdays,
        parts[2] == "*", parts[4] == "*",
    )  # fmt: skip


def _field(text: str, index: int) -> set[int]:
    what, low, high = _FIELDS[index]
    names = _NAMES.get(index, {})
    out: set[int] = set()

    def number(token: str) -> int:
        value = names.get(token.lower())
        if value is None:
            if not token.isdigit():
                raise CronError(f"cron {what} field `{text}`: `{token}` is not a number")
            value = int(token)
        if not low <= value <= high:
            raise CronError(f"cron {what} field `{text}`: {value} is outside {low}-{high}")
        return value

    for item in text.split(","):
        body, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"cron {what} field `{text}`: step `{step_text}` is not a positive number")
            step = int(step_text)
        if body == "*":
            start, end = low, high if index != 4 else 6
        elif "-" in body:
            a, _, b = body.partition("-")
            start, end = number(a), number(b)
            if start > end:
                raise CronError(f"cron {what} field `{text}`: range {a}-{b} runs backwards")
        else:
            start = number(body)
            end = high if step_text else start
        out.update(range(start, end + 1, step))
    return out


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f"unknown time zone `{name}` (an IANA name such as Europe/Paris or UTC)") from None


class Schedule:
    """The tick times of an ``every`` or ``cron`` schedule (epoch ms)."""

    def __init__(
        self, *, every_ms: int | None = None, cron: str | None = None, timezone: str = "UTC"
    ) -> None:
        if (every_ms is None) == (cron is None):
            raise ValueError("a schedule has either every or cron")
        if every_ms is not None and every_ms <= 0:
            raise ValueError("every must be more than 0")
        self.every_ms = every_ms
        self.cron = parse_cron(cron) if cron is not None else None
        self.zone = zone(timezone)

    def next_after(self, ms: int) -> int:
        """The first tick strictly after ``ms``."""
        if self.every_ms is not None:
            return (ms // self.every_ms + 1) * self.every_ms
        for tick in self._cron_from(ms):
            return tick
        raise CronError("the cron expression never matches")

    def latest_at_or_before(self, ms: int) -> int | None:
        """The last tick at or before ``ms`` (None: none in the horizon)."""
        if self.every_ms is not None:
            return ms // self.every_ms * self.every_ms
        # walk back a day at a time: the first day with a tick at or before ms holds the latest
        assert self.cron is not None
        day = dt.datetime.fromtimestamp(ms / 1000, self.zone).date()
        for _ in range(_HORIZON_DAYS):
            if self.cron.day_matches(day):
                times = [t for t in self._day_ticks(day) if t <= ms]
                if times:
                    return times[-1]
            day -= dt.timedelta(days=1)
        return None

    def ticks_between(self, after: int, upto: int, limit: int = MAX_CATCH_UP) -> list[int]:
        """The ticks in ``(after, upto]``, oldest first, at most ``limit``."""
        out: list[int] = []
        tick = after
        while len(out) < limit:
            tick = self.next_after(tick)
            if tick > upto:
                break
            out.append(tick)
        return out

    def _cron_from(self, ms: int) -> Iterator[int]:
        assert self.cron is not None
        day = dt.datetime.fromtimestamp(ms / 1000, self.zone).date()
        for _ in range(_HORIZON_DAYS):
            if self.cron.day_matches(day):
                for tick in self._day_ticks(day):
                    if tick > ms:
                        yield tick
            day += dt.timedelta(days=1)

    def _day_ticks(self, day: dt.date) -> list[int]:
        """The day's matching local times that exist, in UTC ms, in order (a repeated local time
        once: fold 0, its first occurrence)."""
        assert self.cron is not None
        out = []
        for hour in sorted(self.cron.hours):
            for minute in sorted(self.cron.minutes):
                local = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=self.zone)
                utc = local.astimezone(_UTC)
                if utc.astimezone(self.zone).replace(tzinfo=None) != local.replace(tzinfo=None):
                    continue  # in a spring-forward gap: that local time does not exist
                out.append(int(utc.timestamp() * 1000))
        return sorted(set(out))


def due_ticks(schedule: Schedule, last: int | None, tick: int, catch_up: CatchUp) -> tuple[list[int], int]:
    """(the ticks to fire, the new last tick) when a tick record announces ``tick`` and the last
    tick fired was ``last`` (None: never).

    * a tick at or before ``last``: nothing (a duplicate or an old tick record);
    * the first tick ever: ``tick`` alone (there is no missed tick before a node's first);
    * else the missed ticks are those in ``(last, tick]``; ``all`` fires each of them, oldest
      first (at most :data:`MAX_CATCH_UP`, the rest with the next tick record); ``latest`` fires
      ``tick`` only, however many were missed; ``skip`` fires ``tick`` if it is the only one due
      (no tick was missed) and after a gap fires nothing, resuming at the next tick.
    """
    if last is not None and tick <= last:
        return [], last
    if last is None:
        return [tick], tick
    if catch_up == "all":
        fired = schedule.ticks_between(last, tick)
        return fired, (fired[-1] if fired else tick)
    if catch_up == "latest":
        return [tick], tick
    missed = schedule.ticks_between(last, tick, limit=2)
    return ([tick] if missed == [tick] else []), tick
