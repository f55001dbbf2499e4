"""The backup service: runs the schedules, keeps a heartbeat row for the drills, and exports each
kind's last success, last result and expected interval, and the state of WAL archiving, to Prometheus."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from backup import jobs
from backup.config import BackupJobConfig
from backup.tools import BackupError

LOG = logging.getLogger("backup")
TICK_SECONDS = 15
RETRY_AFTER = timedelta(minutes=5)


def postgres_backup_due(config: BackupJobConfig, last: dict[str, datetime], now: datetime) -> str | None:
    """The backup type the schedule asks for now: full, else differential, else incremental, else none."""
    intervals = config.intervals
    full = last.get("full")
    if full is None or now - full >= timedelta(hours=intervals.full_hours):
        return "full"
    newest_diff = max(full, last.get("diff", full))
    if now - newest_diff >= timedelta(hours=intervals.diff_hours):
        return "diff"
    newest = max(newest_diff, last.get("incr", newest_diff))
    if now - newest >= timedelta(hours=intervals.incr_hours):
        return "incr"
    return None


@dataclass
class Schedule:
    config: BackupJobConfig
    last_success: dict[str, datetime] = field(default_factory=dict)
    last_attempt: dict[str, datetime] = field(default_factory=dict)

    def expected_interval(self, kind: str) -> timedelta:
        intervals = self.config.intervals
        return {
            "postgres": timedelta(hours=intervals.incr_hours),
            "files": timedelta(minutes=intervals.files_minutes),
            "redis": timedelta(minutes=intervals.files_minutes),
            "verify": timedelta(hours=intervals.verify_hours),
        }[kind]

    def backing_off(self, kind: str, now: datetime) -> bool:
        """A run of this kind failed less than RETRY_AFTER ago: wait before trying again."""
        attempted = self.last_attempt.get(kind)
        failed = attempted is not None and self.last_success.get(kind, attempted - RETRY_AFTER) < attempted
        return failed and attempted is not None and now - attempted < RETRY_AFTER

    def due(self, kind: str, now: datetime) -> bool:
        last = self.last_success.get(kind)
        elapsed = last is None or now - last >= self.expected_interval(kind)
        return elapsed and not self.backing_off(kind, now)


class BackupService:
    KINDS = ("postgres", "files", "redis", "verify")

    def __init__(self, config: BackupJobConfig, registry: CollectorRegistry) -> None:
        self.config = config
        self.schedule = Schedule(config)
        self.postgres_last: dict[str, datetime] = {}
        labels = ["kind"]
        self.last_success = Gauge(
            "stories_backup_last_success_timestamp_seconds", "Last success", labels, registry=registry
        )
        self.last_result = Gauge(
            "stories_backup_last_run_success", "1 if the last run succeeded", labels, registry=registry
        )
        self.interval = Gauge(
            "stories_backup_expected_interval_seconds", "The schedule's interval", labels, registry=registry
        )
        self.wal_failing = Gauge("stories_backup_wal_archive_failing", "1 while WAL archiving fails", registry=registry)
        self.wal_age = Gauge(
            "stories_backup_wal_last_archived_age_seconds", "Age of the newest archived WAL", registry=registry
        )
        for kind in self.KINDS:
            self.interval.labels(kind).set(self.schedule.expected_interval(kind).total_seconds())

    def start(self) -> None:
        jobs.ensure_repositories(self.config)
        found = jobs.last_successes(self.config)
        self.postgres_last = {kind: found[kind] for kind in jobs.POSTGRES_KINDS if kind in found}
        if self.postgres_last:
            self._succeeded("postgres", max(self.postgres_last.values()))
        for tag in jobs.RESTIC_TAGS:
            if tag in found:
                self._succeeded(tag, found[tag])
        self.schedule.last_success.setdefault("verify", datetime.now(UTC))  # first verify after one interval

    def _succeeded(self, kind: str, when: datetime) -> None:
        self.schedule.last_success[kind] = when
        self.last_success.labels(kind).set(when.timestamp())
        self.last_result.labels(kind).set(1)

    def _attempt(self, kind: str, now: datetime, work: Callable[[], str]) -> None:
        self.schedule.last_attempt[kind] = now
        started = time.monotonic()
        try:
            what = work()
        except BackupError as error:
            self.last_result.labels(kind).set(0)
            LOG.error(json.dumps({"kind": kind, "result": "failed", "error": str(error)}))
            return
        self._succeeded(kind, datetime.now(UTC))
        LOG.info(
            json.dumps({"kind": kind, "result": "ok", "what": what, "seconds": round(time.monotonic() - started, 1)})
        )

    def tick(self, now: datetime) -> None:
        try:
            jobs.heartbeat(self.config)
            status = jobs.wal_status(self.config)
            self.wal_failing.set(1 if status.failing else 0)
            if status.last_archived_age_seconds is not None:
                self.wal_age.set(status.last_archived_age_seconds)
        except BackupError as error:
            LOG.error(json.dumps({"kind": "heartbeat", "result": "failed", "error": str(error)}))
        kind = postgres_backup_due(self.config, self.postgres_last, now)
        if kind and not self.schedule.backing_off("postgres", now):
            self._attempt("postgres", now, lambda: self._postgres(kind))
        if self.schedule.due("files", now):
            self._attempt("files", now, lambda: jobs.backup_files(self.config))
        if self.schedule.due("redis", now):
            self._attempt("redis", now, lambda: jobs.backup_redis(self.config))
        if self.schedule.due("verify", now):
            self._attempt("verify", now, lambda: jobs.verify(self.config))

    def _postgres(self, kind: str) -> str:
        what = jobs.backup_postgres(self.config, kind)
        self.postgres_last[kind] = datetime.now(UTC)
        return what


def serve(config: BackupJobConfig) -> None:
    registry = CollectorRegistry()
    start_http_server(config.metrics_port, registry=registry)
    service = BackupService(config, registry)
    while True:
        try:
            service.start()
            break
        except BackupError as error:
            LOG.error(json.dumps({"kind": "startup", "result": "failed", "error": str(error)}))
            time.sleep(60)
    while True:
        started = time.monotonic()
        service.tick(datetime.now(UTC))
        time.sleep(max(1.0, TICK_SECONDS - (time.monotonic() - started)))
