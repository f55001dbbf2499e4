"""The scaling policy: pure functions of the settings, a moment and the load signals; no I/O.

- The schedule gives a floor: the base replicas of the daily window (local time in the configured
  zone) times the weekend factor and the factor of the season the date falls in, rounded up, within
  [app.replicas, app.maxReplicas].
- Load can raise it: enough replicas that sessions, request rate and CPU per replica stay under their
  thresholds; app.maxReplicas caps it.
- Stability: up at once, one step per decision; down only to the highest target seen during the
  stabilisation period (so noise around a threshold never takes it down), one step per decision, and
  never below the floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from model.settings import ScalingSettings, Settings


@dataclass(frozen=True)
class Bounds:
    minimum: int
    maximum: int

    def clamp(self, value: int) -> int:
        return max(self.minimum, min(self.maximum, value))


@dataclass(frozen=True)
class Policy:
    calendar: ScalingSettings
    bounds: Bounds

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(settings.scaling, Bounds(settings.app.replicas, settings.app.max_replicas))


@dataclass(frozen=True)
class Signals:
    """What the stack measures now; None where a signal is not available."""

    active_sessions: float | None = None
    requests_per_second: float | None = None
    cpu_percent: float | None = None  # mean over running replicas, % of each replica's CPU limit


@dataclass(frozen=True)
class Floor:
    replicas: int
    reason: str


@dataclass(frozen=True)
class Decision:
    desired: int
    floor: int
    target: int
    code: str  # schedule | load | hold | stabilising | step
    reason: str


@dataclass
class History:
    """Targets of recent decisions (time, target), for the scale-down stabilisation window."""

    targets: list[tuple[datetime, int]] = field(default_factory=list)
    since: datetime | None = None

    def remember(self, now: datetime, target: int, window: timedelta) -> None:
        self.since = self.since or now
        self.targets = [(moment, value) for moment, value in self.targets if now - moment < window]
        self.targets.append((now, target))

    def highest_over(self, now: datetime, window: timedelta) -> int | None:
        """The highest target of the last `window`, or None while the history is shorter than it."""
        if self.since is None or now - self.since < window:
            return None
        return max(value for _, value in self.targets)


def scheduled_floor(policy: Policy, now: datetime) -> Floor:
    calendar = policy.calendar
    local = now.astimezone(ZoneInfo(calendar.timezone))
    window = next(w for w in calendar.windows if w.contains(local.time()))
    factor, parts = 1.0, [f"{window.name} {window.start:%H:%M}-{window.end:%H:%M} base {window.replicas}"]
    if local.weekday() >= 5:
        factor *= calendar.weekend_factor
        parts.append(f"weekend x{calendar.weekend_factor:g}")
    season = next((s for s in calendar.seasons if s.start <= local.date() <= s.end), None)
    if season is not None:
        factor *= season.factor
        parts.append(f"{season.name} x{season.factor:g}")
    wanted = math.ceil(round(window.replicas * factor, 9))
    replicas = policy.bounds.clamp(wanted)
    bounded = "" if replicas == wanted else f" (bounded to {replicas})"
    return Floor(replicas, f"{', '.join(parts)} = {wanted}{bounded} at {local:%a %H:%M %Z}")


def load_target(policy: Policy, signals: Signals, running: int) -> tuple[int, str]:
    """Replicas the load needs (0 when no signal is available), and why."""
    thresholds = policy.calendar.load
    needs: list[tuple[int, str]] = []
    if signals.active_sessions is not None:
        need = math.ceil(signals.active_sessions / thresholds.sessions_per_replica)
        needs.append((need, f"{signals.active_sessions:g} sessions / {thresholds.sessions_per_replica} per replica"))
    if signals.requests_per_second is not None:
        need = math.ceil(signals.requests_per_second / thresholds.requests_per_second_per_replica)
        needs.append(
            (
                need,
                f"{signals.requests_per_second:.3g} req/s / {thresholds.requests_per_second_per_replica:g} per replica",
            )
        )
    if signals.cpu_percent is not None and running > 0:
        need = math.ceil(running * signals.cpu_percent / thresholds.cpu_percent)
        needs.append((need, f"CPU {signals.cpu_percent:.3g}% on {running} vs {thresholds.cpu_percent:g}% target"))
    if not needs:
        return 0, "no load signal"
    return max(needs)


def decide(policy: Policy, now: datetime, signals: Signals, running: int, history: History) -> Decision:
    """The replicas to run after this decision (at most one step from `running`), and why."""
    floor = scheduled_floor(policy, now)
    load, load_reason = load_target(policy, signals, running)
    target = policy.bounds.clamp(max(floor.replicas, load))
    window = timedelta(minutes=policy.calendar.scale_down_stable_minutes)
    history.remember(now, target, window)
    driver = "load" if load > floor.replicas else "schedule"
    why = f"floor {floor.replicas} ({floor.reason}); load {load} ({load_reason}); target {target}"
    if target > running:
        return Decision(running + 1, floor.replicas, target, driver, f"scale up {running} -> {running + 1}: {why}")
    highest = history.highest_over(now, window)
    if highest is not None and max(highest, floor.replicas) < running:
        reason = f"scale down {running} -> {running - 1}: {why}; low for the whole stabilisation window"
        return Decision(running - 1, floor.replicas, target, "step", reason)
    if target < running:
        return Decision(
            running,
            floor.replicas,
            target,
            "stabilising",
            f"hold {running}: {why}; waiting until the target stays at most {target} for "
            f"{policy.calendar.scale_down_stable_minutes} min",
        )
    return Decision(running, floor.replicas, target, "hold", f"hold {running}: {why}")
