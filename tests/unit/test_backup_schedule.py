"""The backup schedule: which pgBackRest backup is due, and when a failed kind is retried."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from backup.config import BackupJobConfig
from backup.service import RETRY_AFTER, Schedule, postgres_backup_due
from configs.backup import render_backup_config
from model.topology import container_topology
from tools.plan import settings_for

NOW = datetime(2027, 5, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def config() -> BackupJobConfig:
    settings = settings_for("prod")
    return BackupJobConfig.model_validate_json(render_backup_config(settings, container_topology(settings), "prod"))


def ago(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


@pytest.mark.parametrize(
    ("last", "due"),
    [
        ({}, "full"),
        ({"full": ago(days=8)}, "full"),  # weekly
        ({"full": ago(days=2)}, "diff"),  # daily
        ({"full": ago(days=2), "diff": ago(hours=3)}, "incr"),  # hourly
        ({"full": ago(days=2), "diff": ago(hours=3), "incr": ago(minutes=20)}, None),
        ({"full": ago(minutes=30)}, None),
        ({"full": ago(days=2), "diff": ago(days=1, minutes=1)}, "diff"),
    ],
)
def test_the_highest_level_due_backup_is_chosen(
    config: BackupJobConfig, last: dict[str, datetime], due: str | None
) -> None:
    assert postgres_backup_due(config, last, NOW) == due


def test_a_failed_kind_waits_before_the_next_try(config: BackupJobConfig) -> None:
    schedule = Schedule(config)
    assert schedule.due("files", NOW)  # never ran
    schedule.last_attempt["files"] = NOW  # ... and failed
    assert not schedule.due("files", NOW + RETRY_AFTER / 2)
    assert schedule.due("files", NOW + RETRY_AFTER)
    schedule.last_success["files"] = NOW + RETRY_AFTER
    assert not schedule.due("files", NOW + RETRY_AFTER + timedelta(minutes=5))
    assert schedule.due("files", NOW + RETRY_AFTER + timedelta(minutes=15))  # the 15-minute interval


def test_expected_intervals_follow_the_settings(config: BackupJobConfig) -> None:
    schedule = Schedule(config)
    assert schedule.expected_interval("postgres") == timedelta(hours=1)
    assert schedule.expected_interval("files") == timedelta(minutes=15)
    assert schedule.expected_interval("verify") == timedelta(hours=24)


def test_the_rpo_rules_are_validated() -> None:
    from model.loading import ConfigError, load_settings
    from tests.unit.test_settings import with_change

    with pytest.raises(ConfigError, match=r"must be under the RPO"):
        load_settings(with_change("backup", {"rpoMinutes": 1, "files": {"intervalMinutes": 5}}))
    with pytest.raises(ConfigError, match=r"files.intervalMinutes \(30\) must not exceed the RPO"):
        load_settings(with_change("backup.files", {"intervalMinutes": 30}))
    with pytest.raises(ConfigError, match=r"intervals must nest"):
        load_settings(with_change("backup.postgres", {"diffIntervalHours": 200}))
