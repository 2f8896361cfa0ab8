"""Schedules: the tick times of `every` and `cron` (in a time zone, across daylight-saving
changes), the cron parser's refusals, and the catch-up rules from a last fired tick."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest

from stream_orch.topology.schedule_clock import MAX_CATCH_UP, CronError, Schedule, due_ticks, parse_cron

MIN = 60_000
PARIS = ZoneInfo("Europe/Paris")


def ms(text: str, tz: ZoneInfo | None = None) -> int:
    t = dt.datetime.fromisoformat(text)
    if t.tzinfo is None:
        t = t.replace(tzinfo=tz or dt.UTC)
    return int(t.timestamp() * 1000)


def local(tick: int) -> str:
    return dt.datetime.fromtimestamp(tick / 1000, PARIS).strftime("%Y-%m-%d %H:%M %Z")


def test_every_ticks_on_multiples_of_its_period_since_the_epoch() -> None:
    s = Schedule(every_ms=MIN)
    assert s.next_after(ms("2026-01-01T10:00:00")) == ms("2026-01-01T10:01:00")
    assert s.next_after(ms("2026-01-01T10:00:30")) == ms("2026-01-01T10:01:00")
    assert s.latest_at_or_before(ms("2026-01-01T10:00:59")) == ms("2026-01-01T10:00:00")
    assert s.latest_at_or_before(ms("2026-01-01T10:00:00")) == ms("2026-01-01T10:00:00")
    assert s.ticks_between(ms("2026-01-01T10:00:00"), ms("2026-01-01T10:03:00")) == [
        ms("2026-01-01T10:01:00"),
        ms("2026-01-01T10:02:00"),
        ms("2026-01-01T10:03:00"),
    ]


def test_cron_hourly_in_a_time_zone() -> None:
    s = Schedule(cron="0 * * * *", timezone="Europe/Paris")
    start = ms("2026-06-01T10:20:00", PARIS)
    assert s.next_after(start) == ms("2026-06-01T11:00:00", PARIS)
    assert s.latest_at_or_before(start) == ms("2026-06-01T10:00:00", PARIS)


def test_cron_weekdays_steps_lists_and_names() -> None:
    s = Schedule(cron="*/15 6-7 * * mon-fri")
    fri = ms("2026-01-02T07:50:00")  # a Friday
    assert s.next_after(fri) == ms("2026-01-05T06:00:00")  # Monday, the weekend skipped
    s2 = Schedule(cron="0 0 1,15 jan,jul *")
    assert s2.next_after(ms("2026-01-15T00:00:00")) == ms("2026-07-01T00:00:00")
    # both day fields restricted: either matches (Vixie cron)
    s3 = Schedule(cron="0 12 13 * fri")
    assert s3.next_after(ms("2026-02-01T00:00:00")) == ms("2026-02-06T12:00:00")  # a Friday, not the 13th
    assert Schedule(cron="0 0 * * 7").next_after(ms("2026-01-01T00:00:00")) == ms("2026-01-04T00:00:00")


def test_cron_on_the_spring_forward_day_skips_the_local_time_that_does_not_exist() -> None:
    # Paris 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that day
    s = Schedule(cron="30 2 * * *", timezone="Europe/Paris")
    ticks = s.ticks_between(ms("2026-03-27T12:00:00", PARIS), ms("2026-04-01T00:00:00", PARIS))
    assert [local(t) for t in ticks] == [
        "2026-03-28 02:30 CET",
        "2026-03-30 02:30 CEST",
        "2026-03-31 02:30 CEST",
    ]
    hourly = Schedule(cron="0 * * * *", timezone="Europe/Paris")
    day = hourly.ticks_between(ms("2026-03-28T23:30:00", PARIS), ms("2026-03-29T23:30:00", PARIS))
    assert len(day) == 23 and len(set(day)) == 23  # a 23-hour day
    assert all(b - a == 3_600_000 for a, b in itertools.pairwise(day))


def test_cron_on_the_fall_back_day_fires_a_repeated_local_time_once() -> None:
    # Paris 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice
    s = Schedule(cron="30 2 * * *", timezone="Europe/Paris")
    ticks = s.ticks_between(ms("2026-10-24T12:00:00", PARIS), ms("2026-10-26T12:00:00", PARIS))
    assert [local(t) for t in ticks] == ["2026-10-25 02:30 CEST", "2026-10-26 02:30 CET"]
    hourly = Schedule(cron="0 * * * *", timezone="Europe/Paris")
    day = hourly.ticks_between(ms("2026-10-24T23:30:00", PARIS), ms("2026-10-25T23:30:00", PARIS))
    assert len(day) == 24  # 25 hours long, 02:00 local once: fold 0


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 * * *", "has 4 fields: it needs 5"),
        ("61 * * * *", "minute field `61`: 61 is outside 0-59"),
        ("0 24 * * *", "hour field `24`: 24 is outside 0-23"),
        ("0 0 0 * *", "day of month field `0`: 0 is outside 1-31"),
        ("0 0 * foo *", "month field `foo`: `foo` is not a number"),
        ("*/0 * * * *", "step `0` is not a positive number"),
        ("0 5-2 * * *", "range 5-2 runs backwards"),
    ],
)
def test_a_bad_cron_expression_is_refused_naming_the_field(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=message.replace("*", r"\*")):
        parse_cron(expression)


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(CronError, match="unknown time zone `Mars/Olympus`"):
        Schedule(cron="0 * * * *", timezone="Mars/Olympus")


# ---------------------------------------------------------------------------- catch-up rules

S = Schedule(every_ms=MIN)
T = ms("2026-01-01T10:00:00")


@pytest.mark.parametrize("catch_up", ["latest", "all", "skip"])
def test_the_first_tick_ever_fires_alone_and_a_tick_already_fired_never_again(catch_up: str) -> None:
    assert due_ticks(S, None, T, catch_up) == ([T], T)  # type: ignore[arg-type]
    assert due_ticks(S, T, T, catch_up) == ([], T)  # type: ignore[arg-type]
    assert due_ticks(S, T + MIN, T, catch_up) == ([], T + MIN)  # type: ignore[arg-type]


@pytest.mark.parametrize("catch_up", ["latest", "all", "skip"])
def test_the_next_tick_in_time_fires_whatever_the_rule(catch_up: str) -> None:
    assert due_ticks(S, T, T + MIN, catch_up) == ([T + MIN], T + MIN)  # type: ignore[arg-type]


def test_after_three_missed_periods() -> None:
    now = T + 4 * MIN  # ticks T+1..T+3 were missed; T+4 is due now
    assert due_ticks(S, T, now, "all") == ([T + MIN, T + 2 * MIN, T + 3 * MIN, now], now)
    assert due_ticks(S, T, now, "latest") == ([now], now)  # exactly one catch-up tick
    assert due_ticks(S, T, now, "skip") == ([], now)  # none; the schedule resumes at the next
    assert due_ticks(S, now, now + MIN, "skip") == ([now + MIN], now + MIN)


def test_catch_up_all_is_bounded_per_tick_record_and_loses_nothing() -> None:
    now = T + (MAX_CATCH_UP + 10) * MIN
    fired, last = due_ticks(S, T, now, "all")
    assert len(fired) == MAX_CATCH_UP and last == fired[-1] < now
    rest, last = due_ticks(S, last, now, "all")  # the next tick record fires the rest
    assert fired + rest == [T + i * MIN for i in range(1, MAX_CATCH_UP + 11)] and last == now
