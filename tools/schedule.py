"""`make schedule STACK=prod [WEEK=2027-06-14]`: the week's scheduled replicas as a grid (day x hour),
from the stack's calendar settings, without load. WEEK is any date in the week (default: this week)."""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from model.loading import ConfigError
from scaler.policy import Policy, scheduled_floor
from tools.plan import ROOT, settings_for


def grid(policy: Policy, week: date) -> str:
    zone = ZoneInfo(policy.calendar.timezone)
    monday = week - timedelta(days=week.weekday())
    lines = [
        f"Scheduled app replicas, week of {monday:%Y-%m-%d} ({policy.calendar.timezone}), "
        f"min {policy.bounds.minimum}, max {policy.bounds.maximum}",
        "            " + " ".join(f"{hour:02d}" for hour in range(24)),
    ]
    for offset in range(7):
        day = monday + timedelta(days=offset)
        cells = [
            scheduled_floor(policy, datetime(day.year, day.month, day.day, hour, 30, tzinfo=zone)).replicas
            for hour in range(24)
        ]
        season = next((s.name for s in policy.calendar.seasons if s.start <= day <= s.end), "")
        lines.append(
            f"{day:%a %Y-%m-%d} " + " ".join(f"{cell:2d}" for cell in cells) + (f"  {season}" if season else "")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make schedule", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stack", default="prod")
    parser.add_argument("--week", default="")
    args = parser.parse_args(argv)
    if not (ROOT / f"Pulumi.{args.stack}.yaml").exists():
        print(f"STACK = {args.stack!r}: no Pulumi.{args.stack}.yaml", file=sys.stderr)
        return 2
    try:
        week = date.fromisoformat(args.week) if args.week else date.today()
    except ValueError:
        print(f"WEEK = {args.week!r}: must be a date, YYYY-MM-DD", file=sys.stderr)
        return 2
    try:
        policy = Policy.of(settings_for(args.stack))
    except ConfigError as error:
        print(f"Pulumi.{args.stack}.yaml: {error}", file=sys.stderr)
        return 2
    print(grid(policy, week))
    return 0


if __name__ == "__main__":
    sys.exit(main())
