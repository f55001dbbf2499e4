"""The cron service: the app's scheduled calls. At each job's times (a crontab schedule in the stack's time
zone) it calls `GET <app><path>` with `Authorization: Bearer $CRON_SECRET`, logs one JSON line per call,
and exports per job its last success, the outcome and duration of the last call, and the longest gap of
its schedule (for the CronCallFailed and CronCallLate alerts).

A call counts as a success when the app answers 2xx and its JSON body does not say `"success": false`
(the app's data-retention route answers 200 with success false while DATA_RETENTION_ENABLED is not set).
A call is never repeated once the app may have received it (the digest route would send its digests
twice); only a connection the app never accepted (no replica running yet, one just stopping) is tried
again, for at most `connect_retry_seconds`. A job whose previous call still runs skips its turn.

    python -m cron.service --config /etc/stories/cron/cron.json      (CRON_SECRET in the environment)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from pydantic import BaseModel, ConfigDict, field_validator

from model.schedule import CronSchedule

LOG = logging.getLogger("cron")
SECRET_ENV = "CRON_SECRET"
USER_AGENT = "stories-cron/1.0"
MESSAGE_CHARS = 300
RETRY_PAUSE_SECONDS = 5.0


class JobConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    path: str
    schedule: str

    @field_validator("schedule")
    @classmethod
    def _parses(cls, value: str) -> str:
        CronSchedule.parse(value)
        return value


class CronConfig(BaseModel):
    """What the program renders into cron.json (configs/cron.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stack: str
    base_url: str
    timezone: str
    jobs: list[JobConfig]
    timeout_seconds: int
    connect_retry_seconds: int
    metrics_port: int


@dataclass(frozen=True)
class Outcome:
    success: bool
    code: str  # the HTTP status, or what went wrong before one: "connection", "timeout", "skipped"
    seconds: float
    message: str


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["cronjob"]
        self.last_success = Gauge(
            "stories_cron_last_success_timestamp_seconds",
            "Time of the job's last successful call (the service's start until the first one)",
            labels,
            registry=registry,
        )
        self.last_run_success = Gauge(
            "stories_cron_last_run_success", "1 if the job's last call succeeded, else 0", labels, registry=registry
        )
        self.last_duration = Gauge(
            "stories_cron_last_duration_seconds", "How long the job's last call took", labels, registry=registry
        )
        self.expected_interval = Gauge(
            "stories_cron_expected_interval_seconds",
            "The longest time between two runs of the job's schedule",
            labels,
            registry=registry,
        )
        self.calls = Counter(
            "stories_cron_calls", "Calls by job and HTTP status (or connection, timeout, skipped)",
            ["cronjob", "code"], registry=registry,
        )  # fmt: skip


class Caller:
    """Makes one job's call; `opener` is urllib's, replaceable in tests."""

    def __init__(
        self,
        config: CronConfig,
        secret: str,
        opener: Callable[..., Any] = urllib.request.urlopen,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.secret = secret
        self.opener = opener
        self.sleep = sleep

    def call(self, job: JobConfig) -> Outcome:
        started = time.monotonic()
        deadline = started + self.config.connect_retry_seconds
        request = urllib.request.Request(
            self.config.base_url.rstrip("/") + job.path,
            headers={"Authorization": f"Bearer {self.secret}", "User-Agent": USER_AGENT, "Accept": "application/json"},
            method="GET",
        )
        while True:
            try:
                with self.opener(request, timeout=self.config.timeout_seconds) as response:
                    status, body = int(response.status), response.read()
                break
            except urllib.error.HTTPError as error:
                status, body = int(error.code), error.read() or b""
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
                reason = getattr(error, "reason", error)
                if _never_connected(reason) and time.monotonic() < deadline:
                    self.sleep(min(RETRY_PAUSE_SECONDS, max(0.0, deadline - time.monotonic())))
                    continue
                code = "timeout" if isinstance(reason, TimeoutError) else "connection"
                return Outcome(False, code, time.monotonic() - started, self._clean(str(reason)))
        return self._judge(status, body, time.monotonic() - started)

    def _judge(self, status: int, body: bytes, seconds: float) -> Outcome:
        message = ""
        answer: Any = None
        try:
            answer = json.loads(body) if body else None
        except ValueError:
            message = body[:MESSAGE_CHARS].decode(errors="replace")
        if isinstance(answer, dict):
            message = str(answer.get("error") or answer.get("message") or "")
        success = 200 <= status < 300 and not (isinstance(answer, dict) and answer.get("success") is False)
        if 200 <= status < 300 and not success:
            message = f"the app answered success=false: {message}"
        return Outcome(success, str(status), seconds, self._clean(message))

    def _clean(self, text: str) -> str:
        text = " ".join(text.split())[:MESSAGE_CHARS]
        return text.replace(self.secret, "[secret]") if self.secret else text


def _never_connected(reason: object) -> bool:
    """The request never reached the app: refused, or the name has no running replica (Docker's DNS)."""
    return isinstance(reason, ConnectionRefusedError | socket.gaierror)


class Cron:
    def __init__(
        self,
        config: CronConfig,
        caller: Caller,
        registry: CollectorRegistry,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.caller = caller
        self.zone = ZoneInfo(config.timezone)
        self.schedules = {job.name: CronSchedule.parse(job.schedule) for job in config.jobs}
        self.metrics = Metrics(registry)
        self.now = now
        self.running: set[str] = set()
        self._lock = threading.Lock()
        started = now()
        for job in config.jobs:
            gap = self.schedules[job.name].longest_gap(started, self.zone)
            self.metrics.expected_interval.labels(job.name).set(gap.total_seconds())
            # Lateness counts from the start until the first success: a restart forgets the last one.
            self.metrics.last_success.labels(job.name).set(started.timestamp())

    def next_run(self, job: JobConfig, after: datetime) -> datetime:
        """In UTC: aware datetimes of one zone compare by their wall clock, wrong in the hour clocks go back."""
        return self.schedules[job.name].next_after(after, self.zone).astimezone(UTC)

    def next_runs(self, after: datetime) -> dict[str, datetime]:
        return {job.name: self.next_run(job, after) for job in self.config.jobs}

    def run(self, job: JobConfig) -> Outcome:
        """One call of `job`, recorded (a call while the previous one still runs is skipped)."""
        with self._lock:
            if job.name in self.running:
                outcome = Outcome(False, "skipped", 0.0, "the previous call is still running")
                self._record(job, outcome, count_only=True)
                return outcome
            self.running.add(job.name)
        try:
            outcome = self.caller.call(job)
        finally:
            with self._lock:
                self.running.discard(job.name)
        self._record(job, outcome)
        return outcome

    def _record(self, job: JobConfig, outcome: Outcome, count_only: bool = False) -> None:
        self.metrics.calls.labels(job.name, outcome.code).inc()
        if not count_only:
            self.metrics.last_run_success.labels(job.name).set(1 if outcome.success else 0)
            self.metrics.last_duration.labels(job.name).set(outcome.seconds)
            if outcome.success:
                self.metrics.last_success.labels(job.name).set(self.now().timestamp())
        line = {
            "time": self.now().isoformat(),
            "cronjob": job.name,
            "path": job.path,
            "code": outcome.code,
            "seconds": round(outcome.seconds, 3),
            "success": outcome.success,
        }
        if outcome.message:
            line["message"] = outcome.message
        (LOG.info if outcome.success else LOG.warning)(json.dumps(line))

    def forever(self, stop: threading.Event) -> None:
        """Wait for the next due time, start each job due then in a thread of its own, repeat."""
        due = self.next_runs(self.now())
        while not stop.is_set():
            moment = min(due.values())
            stop.wait(max(0.0, (moment - self.now()).total_seconds()))
            if stop.is_set():
                return
            for job in self.config.jobs:
                if due[job.name] <= self.now():
                    threading.Thread(target=self.run, args=(job,), name=job.name, daemon=True).start()
                    due[job.name] = self.next_run(job, due[job.name])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    config = CronConfig.model_validate_json(args.config.read_text())
    secret = os.environ.get(SECRET_ENV, "")
    if not secret:
        LOG.error(json.dumps({"error": f"{SECRET_ENV} is not set: the app's cron routes would answer 401"}))
        return 2
    registry = CollectorRegistry()
    start_http_server(config.metrics_port, registry=registry)
    cron = Cron(config, Caller(config, secret), registry)
    zone = ZoneInfo(config.timezone)
    for name, moment in cron.next_runs(datetime.now(UTC)).items():
        next_run = moment.astimezone(zone).isoformat()
        LOG.info(json.dumps({"cronjob": name, "next": next_run, "timezone": config.timezone}))
    stop = threading.Event()
    # PID 1 in its container: without a handler SIGTERM (docker stop) would be ignored until SIGKILL.
    signal.signal(signal.SIGTERM, lambda _number, _frame: stop.set())
    signal.signal(signal.SIGINT, lambda _number, _frame: stop.set())
    cron.forever(stop)
    LOG.info(json.dumps({"stopped": datetime.now(UTC).isoformat()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
