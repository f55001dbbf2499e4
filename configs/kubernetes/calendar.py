"""The school calendar as KEDA cron triggers that partition time.

KEDA's cron scaler is active while the next `end` comes no later than the next `start`, and a ScaledObject
takes the maximum over its active triggers. So each trigger here stands for a set of disjoint intervals of
one value, with `start` firing exactly at their starts and `end` exactly at their ends (an end that fired
anywhere else would switch the trigger on until its next start): then for any moment exactly one trigger
is active, with the value of `scaler.policy.scheduled_floor` there. The values come from that function, so
the calendar's rules (windows, weekend factor, seasons, bounds, time zone) are decided in one place.

A cron expression cannot say "a weekend day inside a dated season" (when both day fields are restricted it
matches either), and it has no year. Without seasons the pattern repeats every week and the triggers name
weekdays: they hold for any year. With seasons, the triggers cover the twelve months from the 1st of the
month of the earliest season: months that no season touches name weekdays, the others name their days of
that school year (regenerated when the seasons change for the next one).
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from model.settings import ScalingSettings, Settings
from scaler.policy import Policy, scheduled_floor

WEEK = 7
MONTHS_IN_SPAN = 12


@dataclass(frozen=True)
class Interval:
    """[start, end) in local wall-clock time, at `replicas`."""

    start: datetime
    end: datetime
    replicas: int


@dataclass(frozen=True)
class CronTrigger:
    start: str
    end: str
    replicas: int

    def metadata(self, timezone: str) -> dict[str, str]:
        return {"timezone": timezone, "start": self.start, "end": self.end, "desiredReplicas": str(self.replicas)}


def _boundaries(calendar_: ScalingSettings) -> list[time]:
    """The times of day where a value may change: midnight and every window's start (the windows tile
    the day, so their ends are other windows' starts)."""
    return sorted({time(0, 0)} | {time(w.start.hour, w.start.minute) for w in calendar_.windows})


def span(calendar_: ScalingSettings) -> tuple[date, date]:
    """[first, end) of the days the triggers are generated for: one week from a Monday without seasons,
    else twelve months from the 1st of the month of the earliest season."""
    if not calendar_.seasons:
        return date(2024, 1, 1), date(2024, 1, 1 + WEEK)  # any Monday: the weekly pattern is the same
    first = min(season.start for season in calendar_.seasons).replace(day=1)
    return first, first.replace(year=first.year + 1)


def _days(first: date, end: date) -> Iterable[date]:
    day = first
    while day < end:
        yield day
        day += timedelta(days=1)


def intervals(settings: Settings) -> list[Interval]:
    """The policy's floor over the span as maximal intervals of one value. Without seasons the week is a
    cycle: an interval running over its end continues at its start."""
    policy, scaling = Policy.of(settings), settings.scaling
    zone = ZoneInfo(scaling.timezone)
    first, end = span(scaling)
    pieces: list[Interval] = []
    for day in _days(first, end):
        for moment in _boundaries(scaling):
            local = datetime.combine(day, moment)
            replicas = scheduled_floor(policy, local.replace(tzinfo=zone)).replicas
            if pieces and pieces[-1].replicas == replicas:
                continue
            if pieces:
                pieces[-1] = Interval(pieces[-1].start, local, pieces[-1].replicas)
            pieces.append(Interval(local, local, replicas))
    pieces[-1] = Interval(pieces[-1].start, datetime.combine(end, time(0, 0)), pieces[-1].replicas)
    if not scaling.seasons and len(pieces) > 1 and pieces[0].replicas == pieces[-1].replicas:
        wrapped = pieces[0].end + timedelta(days=WEEK)
        pieces = [Interval(pieces[-1].start, wrapped, pieces[0].replicas), *pieces[1:-1]]
    return pieces


def _ranges(numbers: Iterable[int]) -> str:
    """1,2,3,5 -> "1-3,5"."""
    ordered = sorted(set(numbers))
    parts: list[str] = []
    start = previous = ordered[0]
    for number in [*ordered[1:], None]:
        if number is not None and number == previous + 1:
            previous = number
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        if number is not None:
            start = previous = number
    return ",".join(parts)


def _cron_weekday(day: date) -> int:
    return day.isoweekday() % 7  # cron: 0 = Sunday


def _day_fields(days: list[date], dated: bool) -> tuple[str, str, str]:
    """(day of month, month, day of week) that match exactly `days` within their months of the span: the
    weekdays when every such weekday of those months is in `days` and no month is `dated`, else the days
    of one month."""
    months = {day.month for day in days}
    weekdays = {_cron_weekday(day) for day in days}
    every = {
        day
        for month_start in {day.replace(day=1) for day in days}
        for day in _days(
            month_start, month_start + timedelta(days=calendar.monthrange(month_start.year, month_start.month)[1])
        )
        if _cron_weekday(day) in weekdays
    }
    if not dated and every == set(days):
        return "*", "*" if len(months) == MONTHS_IN_SPAN else _ranges(months), _ranges(weekdays)
    (month,) = months  # dated selectors are built per month
    return _ranges(day.day for day in days), str(month), "*"


def _cron(moment: time, fields: tuple[str, str, str]) -> str:
    return f"{moment.minute} {moment.hour} {' '.join(fields)}"


def triggers(settings: Settings) -> list[CronTrigger]:
    """The cron triggers, grouped by value and times of day; split by month (of start and end) where a
    month holds dated days; months that name weekdays alike are joined."""
    scaling = settings.scaling
    if not scaling.seasons:
        return _weekly_triggers(intervals(settings))
    dated = {
        (day.year, day.month)
        for season in scaling.seasons
        for day in _days(season.start, season.end + timedelta(days=1))
    }
    groups: dict[tuple[int, time, time, int, int], list[Interval]] = defaultdict(list)
    for each in intervals(settings):
        key = (each.replicas, each.start.time(), each.end.time(), each.start.month, each.end.month)
        groups[key].append(each)
    joined: dict[tuple[int, time, time, str, str], set[str]] = defaultdict(set)
    result: list[CronTrigger] = []
    for (replicas, start, end, _, _), members in groups.items():
        starts = [each.start.date() for each in members]
        ends = [each.end.date() for each in members]
        # Weekdays only for intervals within one day: at the end of a month the next events are that month's
        # next year, whose weekdays differ, and an interval over midnight could then meet its end first.
        within_days = all(each.start.date() == each.end.date() for each in members)
        is_dated = not within_days or any((day.year, day.month) in dated for day in starts)
        start_fields, end_fields = _day_fields(starts, is_dated), _day_fields(ends, is_dated)
        if start_fields[0] == "*" and end_fields[0] == "*" and start_fields[1] == end_fields[1]:
            joined[replicas, start, end, start_fields[2], end_fields[2]].add(start_fields[1])
        else:
            result.append(CronTrigger(_cron(start, start_fields), _cron(end, end_fields), replicas))
    for (replicas, start, end, start_weekdays, end_weekdays), months in joined.items():
        month_field = _ranges(int(part) for field in months for part in _expand(field))
        if len(_expand(month_field)) == MONTHS_IN_SPAN:
            month_field = "*"
        start_cron = _cron(start, ("*", month_field, start_weekdays))
        result.append(CronTrigger(start_cron, _cron(end, ("*", month_field, end_weekdays)), replicas))
    return sorted(result, key=lambda trigger: (_first_month(trigger), trigger.start, trigger.end))


def _expand(field: str) -> list[int]:
    """ "1-3,5" -> [1, 2, 3, 5] ("*": the twelve months)."""
    if field == "*":
        return list(range(1, MONTHS_IN_SPAN + 1))
    numbers: list[int] = []
    for part in field.split(","):
        low, _, high = part.partition("-")
        numbers += range(int(low), int(high or low) + 1)
    return numbers


def _first_month(trigger: CronTrigger) -> int:
    return min(_expand(trigger.start.split()[3]))


def _weekly_triggers(pieces: list[Interval]) -> list[CronTrigger]:
    groups: dict[tuple[int, time, time], list[Interval]] = defaultdict(list)
    for each in pieces:
        groups[each.replicas, each.start.time(), each.end.time()].append(each)
    return [
        CronTrigger(
            _cron(start, ("*", "*", _ranges(_cron_weekday(each.start.date()) for each in members))),
            _cron(end, ("*", "*", _ranges(_cron_weekday(each.end.date()) for each in members))),
            replicas,
        )
        for (replicas, start, end), members in sorted(groups.items())
    ]
