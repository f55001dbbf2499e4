"""Cron schedules (model/schedule.py): the five fields, their forms, and times in a time zone whose clocks
change (Europe/Berlin: forward on 2027-03-28 at 02:00, back on 2027-10-31 at 03:00)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from model.schedule import CronSchedule, ScheduleError

BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN)


def runs(schedule: str, start: str, count: int) -> list[str]:
    parsed, moment, found = CronSchedule.parse(schedule), at(start), []
    for _ in range(count):
        moment = parsed.next_after(moment, BERLIN)
        found.append(moment.isoformat())
    return found


@pytest.mark.parametrize(
    ("schedule", "start", "expected"),
    [
        ("30 3 * * *", "2027-06-01T12:00", ["2027-06-02T03:30:00+02:00", "2027-06-03T03:30:00+02:00"]),
        ("0 * * * *", "2027-06-01T23:10", ["2027-06-02T00:00:00+02:00", "2027-06-02T01:00:00+02:00"]),
        ("*/20 8-9 * * *", "2027-06-01T09:30", ["2027-06-01T09:40:00+02:00", "2027-06-02T08:00:00+02:00"]),
        ("0 7 * * mon-fri", "2027-06-04T08:00", ["2027-06-07T07:00:00+02:00", "2027-06-08T07:00:00+02:00"]),
        ("0 7 * * 0", "2027-06-01T00:00", ["2027-06-06T07:00:00+02:00", "2027-06-13T07:00:00+02:00"]),
        ("0 7 * * 7", "2027-06-01T00:00", ["2027-06-06T07:00:00+02:00", "2027-06-13T07:00:00+02:00"]),
        ("0 0 1,15 jan *", "2027-01-10T00:00", ["2027-01-15T00:00:00+01:00", "2028-01-01T00:00:00+01:00"]),
        ("@monthly", "2027-06-15T00:00", ["2027-07-01T00:00:00+02:00", "2027-08-01T00:00:00+02:00"]),
        ("0 0 29 2 *", "2027-01-01T00:00", ["2028-02-29T00:00:00+01:00", "2032-02-29T00:00:00+01:00"]),
        # Both day fields restricted: either matches (the 13th, and every Friday).
        ("0 12 13 * fri", "2027-08-11T00:00", ["2027-08-13T12:00:00+02:00", "2027-08-20T12:00:00+02:00"]),
        ("5/20 * * * *", "2027-06-01T10:00", ["2027-06-01T10:05:00+02:00", "2027-06-01T10:25:00+02:00"]),
    ],
)
def test_next_runs(schedule: str, start: str, expected: list[str]) -> None:
    assert runs(schedule, start, len(expected)) == expected


def test_a_time_the_clocks_skip_does_not_run_and_a_repeated_one_runs_once() -> None:
    assert runs("30 2 * * *", "2027-03-27T12:00", 2) == ["2027-03-29T02:30:00+02:00", "2027-03-30T02:30:00+02:00"]
    assert runs("30 2 * * *", "2027-10-30T12:00", 2) == ["2027-10-31T02:30:00+02:00", "2027-11-01T02:30:00+01:00"]


def test_a_schedule_of_every_hour_goes_on_through_the_repeated_hour() -> None:
    hourly = runs("0 * * * *", "2027-10-31T01:30", 3)
    assert hourly == ["2027-10-31T02:00:00+02:00", "2027-10-31T02:00:00+01:00", "2027-10-31T03:00:00+01:00"]
    minutely = CronSchedule.parse("* * * * *")
    moment = datetime(2027, 10, 31, 0, 59, 30, tzinfo=UTC)  # 02:59:30 CEST, the last minute of summer time
    following = [minutely.next_after(moment, BERLIN)]
    following.append(minutely.next_after(following[0], BERLIN))
    assert [each.astimezone(UTC).strftime("%H:%M") for each in following] == ["01:00", "01:01"]


def test_next_after_is_strictly_later_and_works_from_any_zone() -> None:
    schedule = CronSchedule.parse("* * * * *")
    moment = datetime(2027, 6, 1, 10, 0, 30, tzinfo=UTC)
    assert schedule.next_after(moment, BERLIN) == datetime(2027, 6, 1, 10, 1, tzinfo=UTC)
    exact = datetime(2027, 6, 1, 10, 1, tzinfo=UTC)
    assert schedule.next_after(exact, BERLIN) == exact + timedelta(minutes=1)


@pytest.mark.parametrize(
    ("schedule", "gap"),
    [
        ("* * * * *", timedelta(minutes=1)),
        ("0 * * * *", timedelta(hours=1)),
        ("30 3 * * *", timedelta(hours=25)),
        ("0 7 * * 1-5", timedelta(days=3, hours=1)),  # Friday to Monday over the weekend clocks go back
        ("@weekly", timedelta(days=7, hours=1)),
    ],
)
def test_longest_gap_counts_real_time_across_clock_changes(schedule: str, gap: timedelta) -> None:
    assert CronSchedule.parse(schedule).longest_gap(at("2027-10-25T00:00"), BERLIN) == gap


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("* * *", "needs 5 fields"),
        ("60 * * * *", "minute: 60 is outside 0-59"),
        ("0 24 * * *", "hour: 24 is outside 0-23"),
        ("0 0 0 * *", "day of month: 0 is outside 1-31"),
        ("0 0 * 13 *", "month: 13 is outside 1-12"),
        ("0 0 * * 8", "day of week: 8 is outside 0-7"),
        ("0 0 * * funday", "not a number or a name (sun, mon"),
        ("5-1 * * * *", "runs backwards"),
        ("*/0 * * * *", "at least 1"),
        ("1,,2 * * * *", "is not `*`"),
        ("0 0 30 2 *", "never fires"),
        ("@often", "needs 5 fields"),
    ],
)
def test_bad_schedules_say_which_field_and_why(schedule: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message.replace("*", r"\*").replace("(", r"\(")):
        CronSchedule.parse(schedule)
