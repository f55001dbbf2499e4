"""The KEDA cron triggers partition time: at every hour of a school year exactly one is active (as KEDA's
cron scaler decides it), and its replicas are the scaler policy's floor there."""

from __future__ import annotations

import bisect
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from configs.kubernetes.calendar import CronTrigger, span, triggers
from model.loading import load_settings
from model.schedule import CronSchedule
from model.settings import Settings
from scaler.policy import Policy, scheduled_floor
from tools.plan import settings_for

MARGIN = timedelta(days=8)


class KedaCron:
    """KEDA's cron scaler (pkg/scalers/cron_scaler.go): active while the next end (robfig/cron's Next,
    strictly after now, in the trigger's zone) comes no later than the next start."""

    def __init__(self, trigger: CronTrigger, zone: ZoneInfo, first: datetime, last: datetime) -> None:
        self.trigger = trigger
        self.starts = self._fires(CronSchedule.parse(trigger.start), zone, first, last)
        self.ends = self._fires(CronSchedule.parse(trigger.end), zone, first, last)

    @staticmethod
    def _fires(schedule: CronSchedule, zone: ZoneInfo, first: datetime, last: datetime) -> list[datetime]:
        fires, moment = [], first
        while moment < last:
            moment = schedule.next_after(moment, zone).astimezone(UTC)
            fires.append(moment)
        return fires

    def active(self, now: datetime) -> bool:
        next_start = self.starts[bisect.bisect_right(self.starts, now)]
        next_end = self.ends[bisect.bisect_right(self.ends, now)]
        return next_end <= next_start


def hours(first: date, end: date, zone: ZoneInfo) -> list[datetime]:
    moment = datetime.combine(first, datetime.min.time(), zone).astimezone(UTC)
    last = datetime.combine(end, datetime.min.time(), zone).astimezone(UTC)
    result = []
    while moment < last:
        result.append(moment)
        moment += timedelta(hours=1)
    return result


def check_partition(settings: Settings, first: date, end: date) -> None:
    zone = ZoneInfo(settings.scaling.timezone)
    moments = hours(first, end, zone)
    crons = [KedaCron(t, zone, moments[0] - MARGIN, moments[-1] + MARGIN) for t in triggers(settings)]
    policy = Policy.of(settings)
    for moment in moments:
        active = [cron.trigger for cron in crons if cron.active(moment)]
        assert len(active) == 1, f"{moment.astimezone(zone)}: {len(active)} active: {active}"
        assert active[0].replicas == scheduled_floor(policy, moment).replicas, moment.astimezone(zone)


def with_scaling(scaling: dict[str, Any], replicas: int = 1, max_replicas: int = 6) -> Settings:
    return load_settings(
        {
            "domain": "stories.example.org",
            "app": {"image": "app:1.0", "replicas": replicas, "maxReplicas": max_replicas}
            | {"migration": {"enabled": False}},
            "scaling": {"enabled": True, **scaling},
        },
        set(),
    )


def test_prod_triggers_reproduce_the_floor_for_every_hour_of_its_school_year() -> None:
    settings = settings_for("prod")
    first, end = span(settings.scaling)
    assert (first, end) == (date(2026, 10, 1), date(2027, 10, 1))
    check_partition(settings, first, end)


def test_without_seasons_the_weekly_triggers_hold_in_any_year() -> None:
    settings = with_scaling({"weekendFactor": 0.5})
    assert all(t.start.split()[2:4] == ["*", "*"] for t in triggers(settings))
    check_partition(settings, date(2027, 3, 1), date(2027, 4, 15))  # a DST change included


CALENDAR = {
    "timezone": "America/New_York",
    "windows": [
        {"name": "morning", "start": "07:30", "end": "12:00", "replicas": 4},
        {"name": "afternoon", "start": "12:00", "end": "19:00", "replicas": 5},
        {"name": "night", "start": "19:00", "end": "07:30", "replicas": 2},
    ],
    "weekendFactor": 0.4,
    "seasons": [
        {"name": "winter", "start": "2026-12-19", "end": "2027-01-03", "factor": 0.5},
        {"name": "exams", "start": "2027-05-31", "end": "2027-06-11", "factor": 1.5},
        {"name": "summer", "start": "2027-06-26", "end": "2027-09-06", "factor": 0.25},
    ],
}


def test_seasons_crossing_months_and_years_with_weekends_inside_them() -> None:
    settings = with_scaling(CALENDAR)
    first, end = span(settings.scaling)
    check_partition(settings, first, end)


@pytest.mark.parametrize("factor", [1.0, 0.5])
def test_a_calendar_whose_floor_never_changes_has_one_trigger_always_on(factor: float) -> None:
    settings = with_scaling({"weekendFactor": factor}, replicas=3, max_replicas=3)
    assert len(triggers(settings)) == 1
    check_partition(settings, date(2027, 1, 1), date(2027, 1, 15))
