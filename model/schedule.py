"""Cron schedules (the five fields of crontab(5)), evaluated in a time zone: the settings validate them
and the cron service (cron/service.py) runs by them. Standard library only: the service's image copies
this file.

    minute hour day-of-month month day-of-week      e.g. "30 3 * * *", "0 * * * 1-5", "*/15 8-18 * * *"

Each field: `*`, a number, a range `a-b`, a step `*/n` or `a-b/n` or `a/n`, or a comma list of those.
Months and weekdays also by their English three-letter names; weekday 0 and 7 are Sunday. As in cron,
when both day fields are restricted a day matches either. `@hourly`, `@daily`, `@weekly`, `@monthly`
and `@yearly` stand for their usual five fields.

Local time is the time zone's wall clock, as in cron: on the day clocks go forward, a time inside the
skipped hour does not exist and is skipped; on the day they go back, a time in the repeated hour runs once
(at its first occurrence), unless the schedule runs every hour (hour `*`), which goes on through both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# (name, lowest, highest, names of the values from `lowest` on)
FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, MONTHS),
    ("day of week", 0, 7, WEEKDAYS),
)
_ITEM = re.compile(r"^(?P<range>\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(?P<step>\d+))?$")
# Every schedule fires at least once in five years (29 February included) or never.
SEARCH_DAYS = 5 * 366


class ScheduleError(ValueError):
    """A schedule that cannot be parsed, or that never fires; the message says which field and why."""


def _value(text: str, field: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if text.isdigit():
        number = int(text)
    elif text in names:
        number = names.index(text) + low
    else:
        raise ScheduleError(
            f"{field}: {text!r} is not a number" + (f" or a name ({', '.join(names)})" if names else "")
        )
    if not low <= number <= high:
        raise ScheduleError(f"{field}: {number} is outside {low}-{high}")
    return number


def _field(text: str, field: str, low: int, high: int, names: tuple[str, ...]) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        match = _ITEM.match(item)
        if not match:
            raise ScheduleError(f"{field}: {item!r} is not `*`, a number, a range a-b or a step */n")
        part, step = match["range"], int(match["step"] or 1)
        if step < 1:
            raise ScheduleError(f"{field}: the step of {item!r} must be at least 1")
        if part == "*":
            first, last = low, high
        elif "-" in part:
            start, end = part.split("-", 1)
            first, last = _value(start, field, low, high, names), _value(end, field, low, high, names)
            if first > last:
                raise ScheduleError(f"{field}: the range {item!r} runs backwards")
        else:
            first = _value(part, field, low, high, names)
            last = high if match["step"] else first  # `a/n`: from a to the end, every n
        values.update(range(first, last + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool

    @staticmethod
    def parse(text: str) -> CronSchedule:
        expanded = MACROS.get(text.strip().lower(), text.strip().lower())
        parts = expanded.split()
        if len(parts) != len(FIELDS):
            raise ScheduleError(
                f"needs {len(FIELDS)} fields (minute hour day-of-month month day-of-week) or a macro "
                f"({', '.join(MACROS)}), got {len(parts)}"
            )
        minutes, hours, days, months, weekdays = (_field(part, *spec) for part, spec in zip(parts, FIELDS, strict=True))
        schedule = CronSchedule(
            text=text,
            minutes=minutes,
            hours=hours,
            days=days,
            months=months,
            weekdays=frozenset(day % 7 for day in weekdays),
            days_restricted=parts[2] != "*",
            weekdays_restricted=parts[4] != "*",
        )
        if not any(day <= _longest_month(month) for month in months for day in days):
            raise ScheduleError(f"never fires: no month of {parts[3]!r} has a day {parts[2]!r}")
        return schedule

    @property
    def every_hour(self) -> bool:
        return len(self.hours) == 24

    def day_matches(self, day: datetime) -> bool:
        in_month, in_week = day.day in self.days, (day.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_month or in_week
        return in_month and in_week

    def next_after(self, moment: datetime, zone: ZoneInfo) -> datetime:
        """The first time after `moment` (aware) at which the schedule fires, aware in `zone`."""
        first = self._next_on_the_wall_clock(moment, zone)
        if not self.every_hour:
            return first
        # A schedule of every hour also runs through the second pass of an hour the clocks repeat.
        after, until = moment.astimezone(UTC), first.astimezone(UTC)
        hour = after.replace(minute=0, second=0, microsecond=0)
        while hour < until:
            local = hour.astimezone(zone)
            if local.fold == 1 and local.month in self.months and self.day_matches(local):
                for minute in sorted(self.minutes):
                    candidate = hour + timedelta(minutes=minute)
                    if after < candidate < until:
                        return candidate.astimezone(zone)
            hour += timedelta(hours=1)
        return first

    def _next_on_the_wall_clock(self, moment: datetime, zone: ZoneInfo) -> datetime:
        """The first matching wall-clock time after `moment` that exists, at its first occurrence."""
        local = moment.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0) + timedelta(minutes=1)
        end = local + timedelta(days=SEARCH_DAYS)
        after = moment.astimezone(UTC)  # aware datetimes of one zone compare by their wall clock: use UTC
        while local < end:
            if local.month not in self.months:
                year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
                local = datetime(year, month, 1)
            elif not self.day_matches(local):
                local = datetime(local.year, local.month, local.day) + timedelta(days=1)
            elif local.hour not in self.hours:
                local = local.replace(minute=0) + timedelta(hours=1)
            elif local.minute not in self.minutes:
                later = [minute for minute in self.minutes if minute > local.minute]
                local = local.replace(minute=min(later)) if later else local.replace(minute=0) + timedelta(hours=1)
            else:
                aware = local.replace(tzinfo=zone)
                instant = aware.astimezone(UTC)
                exists = instant.astimezone(zone).replace(tzinfo=None) == local
                if exists and instant > after:
                    return aware
                local += timedelta(minutes=1)
        raise ScheduleError(f"{self.text!r} does not fire within {SEARCH_DAYS} days of {moment.isoformat()}")

    def longest_gap(self, start: datetime, zone: ZoneInfo, fires: int = 1000, days: int = 400) -> timedelta:
        """The longest time between two consecutive runs over the next `fires` runs or `days` days, whichever
        comes first: how long a healthy schedule may go without a run."""
        previous = self.next_after(start, zone)
        longest = timedelta(0)
        end = start + timedelta(days=days)
        for _ in range(fires):
            following = self.next_after(previous, zone)
            longest = max(longest, following.astimezone(UTC) - previous.astimezone(UTC))
            if following.astimezone(UTC) > end.astimezone(UTC):
                break
            previous = following
        return longest


def _longest_month(month: int) -> int:
    return 29 if month == 2 else 30 if month in (4, 6, 9, 11) else 31
