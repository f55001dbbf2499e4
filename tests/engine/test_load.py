"""`make load` against the e2e stack: the guide's morning peak through nginx's published port for a bounded
time, every kind of request answered, nothing failed, the p95 within the guide's 2 s, and the scaler's
decisions reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.stack import Running
from tests.engine.conftest import FIGURES
from tools.load_report import KINDS, P95_BAR_MS

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[2]
SECONDS = 30


def test_the_morning_peak_is_served_within_the_guides_bar(stack: Running) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tools.load", "--stack", "e2e", "--seconds", str(SECONDS), "--format", "json"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=SECONDS + 120,
        check=False,
    )
    assert result.stdout, result.stderr
    report = json.loads(result.stdout)
    assert result.returncode == 0, json.dumps(report, indent=2)
    for kind in KINDS:
        assert report["by_kind"][kind]["requests"] > 0, kind
    statuses = report["statuses"]
    assert statuses["ok"] > 0 and report["failed"] == 0, statuses
    assert statuses.get("4xx", 0) == 0, statuses  # every page, range, API call and login was a real route
    assert report["total"]["p95_ms"] <= P95_BAR_MS
    scaler = report["scaler"]
    assert sum(scaler["decisions"].values()) >= SECONDS // 10, scaler  # it decided every few seconds meanwhile
    assert scaler["replicas_after"] >= scaler["replicas_before"] >= 1, scaler
    total = report["total"]
    FIGURES[f"make load (school-morning, {SECONDS} s): req/s, p50/p95/p99 ms"] = (
        f"{total['per_second']:.0f} req/s, {total['p50_ms']:.0f}/{total['p95_ms']:.0f}/{total['p99_ms']:.0f} ms, "
        f"429s {statuses.get('429', 0)}, replicas {scaler['replicas_before']} -> {scaler['replicas_after']}"
    )
