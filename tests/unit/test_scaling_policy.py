"""The scaling policy: the guide's cases as a table, and its invariants as properties."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.loading import ConfigError, load_settings
from scaler.policy import History, Policy, Signals, decide, load_target, scheduled_floor
from tests.unit.test_settings import MINIMAL, with_change
from tools.schedule import grid

BERLIN = ZoneInfo("Europe/Berlin")
SEASONS = [
    {"name": "summer-break", "start": "2027-07-01", "end": "2027-08-31", "factor": 0.3},
    {"name": "exams", "start": "2027-06-07", "end": "2027-06-18", "factor": 2.5},
]


def policy(replicas: int = 1, max_replicas: int = 3, **scaling: Any) -> Policy:
    config = with_change("scaling", {"seasons": SEASONS, **scaling})
    config["app"] = {**config["app"], "replicas": replicas, "maxReplicas": max_replicas}
    return Policy.of(load_settings(config))


def at(day: str, clock: str) -> datetime:
    return datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=BERLIN)


# A term week: Monday 2027-05-10 .. Sunday 2027-05-16.
@pytest.mark.parametrize(
    ("day", "clock", "floor", "why"),
    [
        ("2027-05-10", "07:59", 1, "night"),
        ("2027-05-10", "08:00", 3, "school"),  # the old scaler called 08:00-09:59 off-peak
        ("2027-05-10", "09:30", 3, "school"),
        ("2027-05-10", "17:59", 3, "school"),
        ("2027-05-10", "18:00", 2, "evening"),
        ("2027-05-10", "21:59", 2, "evening"),
        ("2027-05-10", "22:00", 1, "night"),
        ("2027-05-15", "10:00", 2, "weekend x0.5"),  # Saturday: half of 3, rounded up
        ("2027-05-16", "19:00", 1, "weekend x0.5"),  # Sunday evening: half of 2
        ("2027-07-14", "10:00", 1, "summer-break x0.3"),  # 70% less: 0.9, rounded up to 1
        ("2027-06-09", "19:00", 3, "exams x2.5"),  # 150% more: 5, capped at max 3
        ("2027-06-09", "03:00", 3, "exams x2.5"),  # night 1 x 2.5 = 2.5 -> 3
    ],
)
def test_schedule_follows_the_guide(day: str, clock: str, floor: int, why: str) -> None:
    result = scheduled_floor(policy(), at(day, clock))
    assert result.replicas == floor
    assert why in result.reason


@pytest.mark.parametrize(
    ("day", "clock", "floor", "why"),
    [
        ("2027-05-10", "10:00", 2, "school 08:00-18:00 base 3 = 3 (bounded to 2)"),
        ("2027-05-10", "19:00", 2, "evening 18:00-22:00 base 2 = 2 at"),
        ("2027-05-10", "03:00", 2, "night 22:00-08:00 base 1 = 1 (bounded to 2)"),
        ("2027-05-15", "10:00", 2, "weekend x0.5 = 2 at"),  # half the school window's 3, not of the bound
        ("2027-06-09", "10:00", 2, "exams x2.5 = 8 (bounded to 2)"),
    ],
)
def test_default_windows_are_clamped_like_seasons(day: str, clock: str, floor: int, why: str) -> None:
    """app.replicas 2 = app.maxReplicas 2: the default windows (3, 2, 1) are not refused, every scheduled
    value is bounded, the factors applying to what the window asks for."""
    result = scheduled_floor(policy(replicas=2, max_replicas=2, enabled=True), at(day, clock))
    assert result.replicas == floor
    assert why in result.reason


def test_the_grid_shows_the_clamped_windows() -> None:
    lines = grid(policy(max_replicas=1, enabled=True), date(2027, 5, 10)).splitlines()
    assert "min 1, max 1" in lines[0]
    assert all(set(line.split()[2:26]) == {"1"} for line in lines[2:])


def test_load_raises_the_floor_and_max_caps_it() -> None:
    night = at("2027-05-10", "23:00")
    p = policy()
    assert load_target(p, Signals(active_sessions=81), running=1) == (3, "81 sessions / 40 per replica")
    decision = decide(p, night, Signals(active_sessions=81), running=1, history=History())
    assert decision.desired == 2 and decision.code == "load" and "scale up 1 -> 2" in decision.reason
    decision = decide(p, night, Signals(active_sessions=500, requests_per_second=900), running=3, history=History())
    assert decision.desired == 3 and decision.target == 3
    assert load_target(p, Signals(cpu_percent=140), running=1)[0] == 2  # 1 x 140% / 70% target
    assert load_target(p, Signals(), running=2) == (0, "no load signal")


def test_scale_down_waits_for_the_stabilisation_period_and_steps_once() -> None:
    p = policy(scaleDownStableMinutes=10)
    history = History()
    start = at("2027-05-10", "22:00")  # night: floor 1
    running, changes = 3, []
    for minute in range(0, 25):
        decision = decide(p, start + timedelta(minutes=minute), Signals(active_sessions=5), running, history)
        if decision.desired != running:
            changes.append((minute, decision.desired))
        running = decision.desired
    assert changes == [(10, 2), (11, 1)]


def test_config_errors_for_calendars() -> None:
    cases = [
        ({"seasons": [*SEASONS, {"name": "x", "start": "2027-08-30", "end": "2027-09-05", "factor": 1}]}, "overlap"),
        ({"windows": [{"name": "day", "start": "08:00", "end": "20:00", "replicas": 2}]}, "do not cover the day"),
        ({"timezone": "Mars/Olympus"}, "not an IANA time zone"),
        (
            {
                "windows": [
                    {"name": "a", "start": "00:00", "end": "12:00", "replicas": 1},
                    {"name": "b", "start": "11:00", "end": "00:00", "replicas": 1},
                ]
            },
            "overlaps window 'a' at 11:00",
        ),
    ]
    for scaling, rule in cases:
        with pytest.raises(ConfigError, match=rule):
            load_settings(with_change("scaling", scaling))
    with pytest.raises(ConfigError, match=r"must not exceed maxReplicas"):
        load_settings({**MINIMAL, "app": {"image": "a/b:1.0", "replicas": 3, "maxReplicas": 2}})


# --- properties -----------------------------------------------------------------------------------

moments = st.datetimes(min_value=datetime(2026, 9, 1), max_value=datetime(2028, 8, 31), timezones=st.just(UTC))
signals = st.builds(
    Signals,
    active_sessions=st.none() | st.floats(0, 10_000),
    requests_per_second=st.none() | st.floats(0, 5_000),
    cpu_percent=st.none() | st.floats(0, 400),
)


@given(now=moments, load=signals, running=st.integers(1, 3))
def test_always_within_bounds_and_never_below_the_floor(now: datetime, load: Signals, running: int) -> None:
    p = policy()
    decision = decide(p, now, load, running, History())
    assert 1 <= decision.desired <= 3
    floor = scheduled_floor(p, now).replicas
    if running >= floor:
        assert decision.desired >= floor
    else:
        assert decision.desired == running + 1  # on its way up to the floor, one step per decision
    assert abs(decision.desired - running) <= 1


@given(day=st.dates(min_value=date(2026, 9, 1), max_value=date(2028, 8, 31)), hour=st.integers(0, 23))
def test_weekend_never_above_the_same_weekday_hour(day: date, hour: int) -> None:
    p = policy()
    saturday = day + timedelta(days=(5 - day.weekday()) % 7)
    monday = saturday - timedelta(days=5)
    weekend = scheduled_floor(p, datetime(saturday.year, saturday.month, saturday.day, hour, tzinfo=BERLIN))
    weekday = scheduled_floor(p, datetime(monday.year, monday.month, monday.day, hour, tzinfo=BERLIN))
    seasons = p.calendar.seasons
    same_season = [s for s in seasons if s.start <= monday <= s.end] == [
        s for s in seasons if s.start <= saturday <= s.end
    ]
    if same_season:
        assert weekend.replicas <= weekday.replicas


@given(day=st.dates(min_value=date(2027, 7, 1), max_value=date(2027, 8, 31)), hour=st.integers(0, 23))
def test_a_summer_day_never_above_the_same_day_in_term(day: date, hour: int) -> None:
    in_summer = policy()
    in_term = policy(seasons=[])
    moment = datetime(day.year, day.month, day.day, hour, tzinfo=BERLIN)
    assert scheduled_floor(in_summer, moment).replicas <= scheduled_floor(in_term, moment).replicas


@pytest.mark.parametrize("day", ["2027-03-28", "2026-10-25"])  # Europe/Berlin: spring forward, fall back
def test_dst_transitions_follow_the_local_clock(day: str) -> None:
    p = policy()
    start = datetime.fromisoformat(f"{day}T00:00").replace(tzinfo=BERLIN).astimezone(UTC)
    for minutes in range(0, 26 * 60, 15):
        moment = start + timedelta(minutes=minutes)
        local = moment.astimezone(BERLIN)
        expected = 3 if 8 <= local.hour < 18 else 2 if 18 <= local.hour < 22 else 1
        expected = max(1, -(-expected // 2))  # both dates are Sundays: weekend x0.5, rounded up
        assert scheduled_floor(p, moment).replicas == expected, local


@settings(max_examples=60, deadline=None)
@given(
    noise=st.lists(st.floats(-15, 15), min_size=240, max_size=240),
    every=st.integers(1, 9),
)
def test_noise_around_a_threshold_changes_at_most_once_per_stabilisation_period(noise: list[float], every: int) -> None:
    """Sessions hover around 80 (2 vs 3 replicas at 40 per replica), crossing above at least once in
    every stabilisation window; the evening floor is 2. At most one change per window."""
    p = policy(scaleDownStableMinutes=10)
    start = at("2027-05-10", "18:00")
    history, running, changes = History(), 2, []
    for minute, delta in enumerate(noise):
        sessions = 80 + abs(delta) + 0.5 if minute % every == 0 else 80 + delta
        decision = decide(p, start + timedelta(minutes=minute), Signals(active_sessions=sessions), running, history)
        if decision.desired != running:
            changes.append(minute)
        running = decision.desired
    for first, second in itertools.pairwise(changes):
        assert second - first >= 10, changes
