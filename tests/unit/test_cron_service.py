"""The cron service (cron/service.py) without a network: what counts as a success, what is tried again
(only a connection the app never accepted), its metrics and log lines, and the file the program renders."""

from __future__ import annotations

import io
import json
import logging
import secrets
import socket
import threading
import urllib.error
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from configs.cron import CONNECT_RETRY_SECONDS, render_cron_config
from configs.monitoring import CRON_METRICS_PORT
from cron.service import Caller, Cron, CronConfig, JobConfig
from tools.plan import settings_for

SECRET = secrets.token_urlsafe(32)  # generated for the run
JOB = JobConfig(name="hard-delete", path="/api/cron/hard-delete", schedule="* * * * *")


def config(**changes: Any) -> CronConfig:
    values: dict[str, Any] = {
        "stack": "test",
        "base_url": "http://app:3000",
        "timezone": "Europe/Berlin",
        "jobs": [JOB.model_dump()],
        "timeout_seconds": 30,
        "connect_retry_seconds": 60,
        "metrics_port": CRON_METRICS_PORT,
    }
    return CronConfig.model_validate({**values, **changes})


class Answer(io.BytesIO):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(body)
        self.status = status

    def __enter__(self) -> Answer:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()


class FakeApp:
    """An opener that answers from a script: (status, body) pairs or exceptions, recording each request."""

    def __init__(self, *script: tuple[int, bytes] | BaseException) -> None:
        self.script = list(script)
        self.requests: list[Any] = []

    def __call__(self, request: Any, timeout: float) -> Answer:
        self.requests.append((request, timeout))
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        status, body = step
        if status >= 400:
            raise urllib.error.HTTPError(request.full_url, status, "error", {}, io.BytesIO(body))  # type: ignore[arg-type]
        return Answer(status, body)


def caller(app: FakeApp, **changes: Any) -> tuple[Caller, list[float]]:
    slept: list[float] = []
    return Caller(config(**changes), SECRET, app, slept.append), slept


def test_a_call_sends_the_bearer_to_the_app_alias_and_a_2xx_is_a_success() -> None:
    app = FakeApp((200, b'{"success": true, "hardDeletedUsers": 2}'))
    call, _ = caller(app)
    outcome = call.call(JOB)
    assert outcome.success and outcome.code == "200" and outcome.message == ""
    ((request, timeout),) = app.requests
    assert request.full_url == "http://app:3000/api/cron/hard-delete" and request.get_method() == "GET"
    assert request.get_header("Authorization") == f"Bearer {SECRET}" and timeout == 30


def test_success_false_in_a_200_is_a_failure_with_the_apps_message() -> None:
    disabled = b'{"success": false, "message": "Data retention is disabled. Set DATA_RETENTION_ENABLED=true"}'
    outcome = caller(FakeApp((200, disabled)))[0].call(JOB)
    assert not outcome.success and outcome.code == "200"
    assert outcome.message.startswith("the app answered success=false: Data retention is disabled")


@pytest.mark.parametrize(("status", "body"), [(401, b'{"error": "Unauthorized"}'), (500, b"<html>oops</html>")])
def test_an_error_status_is_a_failure_named_by_its_code(status: int, body: bytes) -> None:
    outcome = caller(FakeApp((status, body)))[0].call(JOB)
    assert not outcome.success and outcome.code == str(status) and outcome.message


def test_a_connection_the_app_never_accepted_is_tried_again_and_nothing_else_is() -> None:
    refused = urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
    no_replica = urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))
    app = FakeApp(refused, no_replica, (200, b'{"success": true}'))
    call, slept = caller(app)
    assert call.call(JOB).success and len(app.requests) == 3 and len(slept) == 2
    timeout = urllib.error.URLError(TimeoutError("timed out"))
    app = FakeApp(timeout, (200, b"{}"))  # the app may have received it: never again (twice a digest)
    outcome = caller(app)[0].call(JOB)
    assert not outcome.success and outcome.code == "timeout" and len(app.requests) == 1


def test_retries_end_with_the_window() -> None:
    refused = urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
    app = FakeApp(refused, refused)
    outcome = caller(app, connect_retry_seconds=0)[0].call(JOB)
    assert not outcome.success and outcome.code == "connection" and len(app.requests) == 1


def test_the_secret_never_reaches_a_message() -> None:
    echo = json.dumps({"success": False, "error": f"bad token Bearer {SECRET}"}).encode()
    outcome = caller(FakeApp((200, echo)))[0].call(JOB)
    assert SECRET not in outcome.message and "[secret]" in outcome.message


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_metrics_follow_the_calls_and_lateness_counts_from_the_start(caplog: pytest.LogCaptureFixture) -> None:
    started = datetime(2027, 6, 1, 10, 0, 30, tzinfo=UTC)
    clock = [started]
    registry = CollectorRegistry()
    app = FakeApp((200, b'{"success": true}'), (500, b'{"error": "boom"}'))
    cron = Cron(config(), caller(app)[0], registry, now=lambda: clock[0])
    name = "hard-delete"
    assert sample(registry, "stories_cron_expected_interval_seconds", cronjob=name) == 60
    assert sample(registry, "stories_cron_last_success_timestamp_seconds", cronjob=name) == started.timestamp()
    assert sample(registry, "stories_cron_last_run_success", cronjob=name) is None  # no call yet
    clock[0] = started + timedelta(seconds=30)
    with caplog.at_level(logging.INFO, logger="cron"):
        assert cron.run(JOB).success
        assert not cron.run(JOB).success
    assert sample(registry, "stories_cron_last_success_timestamp_seconds", cronjob=name) == clock[0].timestamp()
    assert sample(registry, "stories_cron_last_run_success", cronjob=name) == 0
    assert sample(registry, "stories_cron_calls_total", cronjob=name, code="200") == 1
    assert sample(registry, "stories_cron_calls_total", cronjob=name, code="500") == 1
    assert sample(registry, "stories_cron_last_duration_seconds", cronjob=name) is not None
    lines = [json.loads(record.getMessage()) for record in caplog.records]
    assert [(line["cronjob"], line["code"], line["success"]) for line in lines] == [
        (name, "200", True),
        (name, "500", False),
    ]
    assert lines[1]["message"] == "boom" and all(SECRET not in record.getMessage() for record in caplog.records)


def test_a_call_while_the_previous_one_runs_is_skipped() -> None:
    entered, release = threading.Event(), threading.Event()

    class Slow:
        def call(self, job: JobConfig) -> Any:
            entered.set()
            release.wait(5)
            return caller(FakeApp((200, b"{}")))[0].call(job)

    registry = CollectorRegistry()
    cron = Cron(config(), Slow(), registry)  # type: ignore[arg-type]
    first = threading.Thread(target=cron.run, args=(JOB,))
    first.start()
    assert entered.wait(5)
    skipped = cron.run(JOB)
    release.set()
    first.join(5)
    assert skipped.code == "skipped" and not skipped.success
    assert sample(registry, "stories_cron_calls_total", cronjob="hard-delete", code="skipped") == 1
    assert sample(registry, "stories_cron_last_run_success", cronjob="hard-delete") == 1


def test_due_times_are_instants_in_utc() -> None:
    cron = Cron(config(timezone="Europe/Berlin"), caller(FakeApp())[0], CollectorRegistry())
    (due,) = cron.next_runs(datetime(2027, 10, 31, 0, 59, 30, tzinfo=UTC)).values()  # 02:59:30 CEST
    assert due == datetime(2027, 10, 31, 1, 0, tzinfo=UTC) and due.tzinfo is UTC  # 02:00 CET, an hour later


@pytest.fixture
def prod_config() -> Iterator[CronConfig]:
    yield CronConfig.model_validate_json(render_cron_config(settings_for("prod"), "prod"))


def test_the_rendered_file_is_what_the_service_reads(prod_config: CronConfig) -> None:
    settings = settings_for("prod")
    assert prod_config.base_url == f"http://app:{settings.app.port}"
    assert prod_config.timezone == settings.cron_timezone == settings.scaling.timezone
    assert [job.model_dump() for job in prod_config.jobs] == [job.model_dump() for job in settings.cron.jobs]
    assert prod_config.metrics_port == CRON_METRICS_PORT and prod_config.connect_retry_seconds == CONNECT_RETRY_SECONDS
    assert {job.path for job in prod_config.jobs} == {
        f"/api/cron/{name}" for name in ("data-retention", "hard-delete", "notification-digest", "server-status")
    }


def test_the_loop_calls_each_due_job_once_per_due_time() -> None:
    """`forever` with a clock that runs a minute ahead at every look: each look finds the next minute due."""
    moments = iter(datetime(2027, 6, 1, 10, 0, 30, tzinfo=UTC) + timedelta(minutes=step) for step in range(1000))
    stop = threading.Event()
    called: list[str] = []

    class Counting:
        def call(self, job: JobConfig) -> Any:
            called.append(job.name)
            if len(called) >= 6:
                stop.set()
            return caller(FakeApp((200, b"{}")))[0].call(job)

    jobs = [JOB.model_dump(), {"name": "digest", "path": "/api/cron/notification-digest", "schedule": "* * * * *"}]
    cron = Cron(config(jobs=jobs), Counting(), CollectorRegistry(), now=lambda: next(moments))  # type: ignore[arg-type]
    runner = threading.Thread(target=cron.forever, args=(stop,), daemon=True)
    runner.start()
    runner.join(10)
    assert not runner.is_alive()
    assert called.count("hard-delete") >= 3 and called.count("digest") >= 3
