"""The load test's shapes, its counting and its report (tools/load_report.py), and its refusals
(tools/load.py, run as `make load` runs it: locust patches the standard library of the process that
imports it, so never this one). The run itself is checked on the e2e stack: tests/engine/test_load.py."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools.load_report import (
    EXAM_FACTOR,
    P95_BAR_MS,
    Latency,
    LoadReport,
    ScalerActivity,
    format_report,
    profile_for,
    scaler_activity,
    status_class,
)
from tools.plan import settings_for

ROOT = Path(__file__).resolve().parents[2]


def test_exam_peak_is_the_morning_times_the_guides_factor() -> None:
    settings = settings_for("e2e")
    morning, exam = profile_for("school-morning", settings), profile_for("exam-peak", settings)
    for kind in ("page_readers", "pdf_readers", "logins"):
        assert getattr(exam, kind) == math.ceil(getattr(morning, kind) * EXAM_FACTOR), kind
    assert exam.users > morning.users


@pytest.mark.parametrize("stack", ["e2e", "prod"])
def test_paced_callers_stay_under_the_stacks_own_limits(stack: str) -> None:
    settings = settings_for(stack)
    limits = settings.proxy.rate_limits
    profile = profile_for("exam-peak", settings)
    assert 0 < profile.api_per_second < limits.api_per_second
    assert 0 < profile.logins_per_second * 60 < limits.auth_per_minute
    changed = settings.model_copy(
        update={
            "proxy": settings.proxy.model_copy(update={"rate_limits": limits.model_copy(update={"api_per_second": 2})})
        }
    )
    assert profile_for("exam-peak", changed).api_per_second < 2


@pytest.mark.parametrize(
    ("status", "counted"),
    [
        (200, "ok"),
        (206, "ok"),
        (304, "ok"),
        (429, "429"),
        (404, "4xx"),
        (502, "5xx"),
        (0, "connection"),
        (None, "connection"),
    ],
)
def test_answers_are_counted_with_429_apart(status: int | None, counted: str) -> None:
    assert status_class(status) == counted


def scaler_line(code: str, action: str, running: int, desired: int) -> str:
    """A decision as the scaler logs it (scaler/service.py: run_once)."""
    return json.dumps(
        {
            "time": "2026-12-01T08:00:05+00:00",
            "running": running,
            "desired": desired,
            "code": code,
            "action": action,
            "reason": f"{code} {desired}",
        }
    )


def test_scaler_activity_counts_decisions_and_lists_what_it_did() -> None:
    log = "\n".join(
        [
            scaler_line("hold", "none", 2, 2),
            "a line that is not JSON",
            scaler_line("load", "started replica 3", 2, 3),
            json.dumps({"time": "2026-12-01T08:00:10+00:00", "action": "none", "reason": "Prometheus unavailable"}),
            scaler_line("hold", "none", 3, 3),
        ]
    )
    activity = scaler_activity(log, 2, 3)
    assert activity.decisions == {"hold": 2, "load": 1, "skipped": 1}
    assert activity.actions == ["08:00:05 started replica 3: load 3"]
    assert (activity.replicas_before, activity.replicas_after) == (2, 3)


def report(p95_ms: float, statuses: dict[str, int]) -> LoadReport:
    latency = Latency(requests=100, per_second=10.0, p50_ms=p95_ms / 4, p95_ms=p95_ms, p99_ms=p95_ms * 2)
    profile = profile_for("school-morning", settings_for("e2e"))
    return LoadReport(profile, 10.0, latency, {"page": latency}, statuses, ScalerActivity({"hold": 2}, [], 2, 2))


def test_the_bar_is_the_guides_p95_and_no_failed_request() -> None:
    assert report(P95_BAR_MS, {"ok": 100, "429": 30}).meets_bar, "429s are not failures"
    assert not report(P95_BAR_MS + 1, {"ok": 100}).meets_bar
    assert not report(10, {"ok": 99, "5xx": 1}).meets_bar
    assert not report(10, {"ok": 99, "connection": 1}).meets_bar
    text = format_report(report(P95_BAR_MS + 1, {"ok": 100}))
    assert "BAR NOT MET" in text and "page" in text and "replicas 2 -> 2" in text
    assert json.loads(json.dumps(report(10, {"ok": 1}).as_json()))["bar"] == {"p95_ms": P95_BAR_MS, "met": True}


def run_load(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.load", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["--stack", "prod"], "settings.proxy.hostIp = '0.0.0.0'"),  # published to the world: not a target here
        (["--stack", "e2e", "--profile", "lunch"], "PROFILE = 'lunch'"),
        (["--stack", "e2e", "--seconds", "5"], "SECONDS = '5'"),
        (["--stack", "nowhere"], "STACK = 'nowhere'"),
    ],
)
def test_bad_input_is_refused_with_the_key_before_any_request(args: list[str], key: str) -> None:
    result = run_load(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().startswith(key), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
