"""Prometheus, Alertmanager and Grafana files checked by the ecosystem's own tools (promtool, amtool),
and every guide alert unit-tested with `promtool test rules`: it fires just above its threshold after
its `for` duration, and stays silent just below it."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from configs import monitoring
from configs.metrics import METRICS, metric_names
from harness.servers import which
from model.settings import Settings
from tests.unit.test_dashboards import dashboard_queries
from tests.unit.test_settings import MINIMAL
from tools.plan import STACKS, settings_for

pytestmark = pytest.mark.integration

INTERVAL_SECONDS = 15


def run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=120, check=False)


def write_rules(directory: Path, settings: Settings) -> list[Path]:
    paths = []
    for name, content in monitoring.render_rules(settings).items():
        path = directory / name
        path.write_text(content)
        paths.append(path)
    return paths


@pytest.mark.parametrize("stack", STACKS)
def test_promtool_accepts_config_and_rules(stack: str, tmp_path: Path) -> None:
    settings = settings_for(stack)
    config = tmp_path / "prometheus.yml"
    config.write_text(monitoring.render_prometheus(settings))
    checked = run([which("promtool"), "check", "config", "--syntax-only", str(config)])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = run([which("promtool"), "check", "rules", *map(str, write_rules(tmp_path, settings))])
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS" in rules.stdout


def humanize(value: float) -> str:
    """Prometheus's `humanize` for the values these tests use (0, or |v| >= 1 with SI prefixes)."""
    assert value == 0 or abs(value) >= 1
    prefix = ""
    for candidate in ("k", "M", "G", "T"):
        if abs(value) < 1000:
            break
        value, prefix = value / 1000, candidate
    return f"{value:.4g}{prefix}"


def humanize_duration(seconds: float) -> str:
    assert 1 <= seconds < 60
    return f"{seconds:.4g}s"


def expand(template: str, labels: dict[str, str], value: float) -> str:
    """Prometheus's alert templating, for the forms the rules use."""
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), template)
    forms: dict[str, Callable[[float], str]] = {
        "{{ $value | humanizeDuration }}": humanize_duration,
        "{{ $value | humanize }}": humanize,
        "{{ $value }}": lambda v: f"{v:g}",
    }
    for form, render in forms.items():
        if form in text:
            text = text.replace(form, render(value))
    return text


@dataclass
class AlertCase:
    """Input series that put an alert's expression just above (fires) or just below (silent) its
    threshold from time 0; `value` is what the expression evaluates to when above."""

    alert: str
    above: dict[str, str]
    below: dict[str, str]
    labels: dict[str, str]
    value: float
    for_seconds: int = 0
    # When the expression is true: from `true_from` at the earliest and from `settle` at the latest.
    # They differ where rate() ramps up while its 5-minute window fills at the start of a series.
    true_from: int = 0
    settle: int | None = None

    @property
    def surely_true_from(self) -> int:
        return self.true_from if self.settle is None else self.settle


def counter(per_second: float, samples: int = 200) -> str:
    return f"0+{per_second * INTERVAL_SECONDS:g}x{samples}"


def gauge(value: float, samples: int = 200) -> str:
    return f"{value:g}x{samples}"


def failures(count: int, at_sample: int = 20, samples: int = 200) -> str:
    """pg_up: 1, with `count` consecutive 0s starting at sample `at_sample`."""
    values = ["1"] * samples
    for index in range(at_sample, at_sample + count):
        values[index] = "0"
    return " ".join(values)


def cases(settings: Settings) -> list[AlertCase]:
    t = settings.monitoring.alerts
    health = f'probe_success{{job="{monitoring.BLACKBOX_JOB}", instance="http://app-1:3000/api/health"}}'
    duration = f'probe_duration_seconds{{job="{monitoring.BLACKBOX_JOB}", instance="http://app-1:3000/api/health"}}'
    second_health = f'probe_success{{job="{monitoring.BLACKBOX_JOB}", instance="http://app-2:3000/api/health"}}'
    container = 'name="stories-app-1"'
    # pg_up samples in a 5-minute window: 21 (Prometheus 2 ranges include both ends). The most failures
    # at or under the threshold stay silent, one more fires; they stay in the window longer than `for`.
    window_samples = 300 // INTERVAL_SECONDS + 1
    allowed = int(t.db_connection_failure_percent / 100 * window_samples)
    late_after = int(settings.backup.late_factor * 900)  # a kind scheduled every 15 minutes
    cron_late_after = int(settings.cron.late_factor * 86400)  # a job whose schedule's longest gap is a day
    idle = 'node_cpu_seconds_total{instance="node", cpu="0", mode="idle"}'
    avail, size = (f'node_filesystem_{kind}_bytes{{fstype="ext4", mountpoint="/"}}' for kind in ("avail", "size"))
    return [
        AlertCase(
            "ServiceDown",
            {'up{job="redis", instance="redis-exporter:9121"}': gauge(0)},
            {'up{job="redis", instance="redis-exporter:9121"}': gauge(1)},
            {"job": "redis", "instance": "redis-exporter:9121"},
            0,
            t.service_down_minutes * 60,
        ),
        AlertCase(
            "AppHealthCheckFailing",
            {health: gauge(0)},
            {health: gauge(1)},
            {"job": monitoring.BLACKBOX_JOB, "instance": "http://app-1:3000/api/health"},
            0,
            t.service_down_minutes * 60,
        ),
        AlertCase(
            "AppReplicasBelowFloor",
            {health: gauge(1), second_health: gauge(0)},
            {health: gauge(1), second_health: gauge(1)},
            {},
            settings.app.replicas - 1,
            t.service_down_minutes * 60,
        ),
        AlertCase(
            "DatabaseConnectionFailures",
            {'pg_up{job="postgres"}': failures(allowed + 1)},
            {'pg_up{job="postgres"}': failures(allowed)},
            {"job": "postgres"},
            100 * (allowed + 1) / window_samples,
            60,
            true_from=(20 + allowed) * INTERVAL_SECONDS,
        ),
        AlertCase(
            "HostMemoryHigh",
            {
                'node_memory_MemAvailable_bytes{instance="node"}': gauge(1000 - t.memory_percent * 10 - 1),
                'node_memory_MemTotal_bytes{instance="node"}': gauge(1000),
            },
            {
                'node_memory_MemAvailable_bytes{instance="node"}': gauge(1000 - t.memory_percent * 10 + 1),
                'node_memory_MemTotal_bytes{instance="node"}': gauge(1000),
            },
            {"instance": "node"},
            t.memory_percent + 0.1,
            120,
        ),
        AlertCase(
            "ContainerMemoryHigh",
            {
                f"container_memory_working_set_bytes{{{container}}}": gauge(t.memory_percent * 10 + 1),
                f"container_spec_memory_limit_bytes{{{container}}}": gauge(1000),
            },
            {
                f"container_memory_working_set_bytes{{{container}}}": gauge(t.memory_percent * 10 - 1),
                f"container_spec_memory_limit_bytes{{{container}}}": gauge(1000),
            },
            {"name": "stories-app-1"},
            t.memory_percent + 0.1,
            120,
        ),
        AlertCase(
            "DiskSpaceLow",
            {avail: gauge(t.disk_free_percent * 10 - 1), size: gauge(1000)},
            {avail: gauge(t.disk_free_percent * 10 + 1), size: gauge(1000)},
            {"fstype": "ext4", "mountpoint": "/"},
            t.disk_free_percent - 0.1,
            300,
        ),
        AlertCase(
            "HostCpuHigh",
            {idle: counter(1 - t.cpu_percent / 100 - 0.01)},
            {idle: counter(1 - t.cpu_percent / 100 + 0.01)},
            {"instance": "node"},
            t.cpu_percent + 1,
            t.cpu_for_minutes * 60,
            true_from=INTERVAL_SECONDS,
        ),
        AlertCase(
            "ContainerCpuHigh",
            {
                f"container_cpu_usage_seconds_total{{{container}}}": counter((t.cpu_percent / 100 + 0.01) / 2),
                f"container_spec_cpu_quota{{{container}}}": gauge(50000),
                f"container_spec_cpu_period{{{container}}}": gauge(100000),
            },
            {
                f"container_cpu_usage_seconds_total{{{container}}}": counter((t.cpu_percent / 100 - 0.01) / 2),
                f"container_spec_cpu_quota{{{container}}}": gauge(50000),
                f"container_spec_cpu_period{{{container}}}": gauge(100000),
            },
            {"name": "stories-app-1"},
            t.cpu_percent + 1,
            t.cpu_for_minutes * 60,
            true_from=INTERVAL_SECONDS,
            settle=300,
        ),
        AlertCase(
            "SlowResponses",
            {duration: gauge(t.response_time_seconds + 0.1)},
            {duration: gauge(t.response_time_seconds - 0.1)},
            {"job": monitoring.BLACKBOX_JOB, "instance": "http://app-1:3000/api/health"},
            t.response_time_seconds + 0.1,
            120,
        ),
        AlertCase(
            "ActiveSessionsHigh",
            {"stories_active_sessions": gauge(t.active_sessions + 1)},
            {"stories_active_sessions": gauge(t.active_sessions)},
            {},
            t.active_sessions + 1,
            300,
        ),
        AlertCase(
            "BackupFailed",
            {'stories_backup_last_run_success{kind="postgres"}': gauge(0)},
            {'stories_backup_last_run_success{kind="postgres"}': gauge(1)},
            {"kind": "postgres"},
            0,
        ),
        AlertCase(
            "BackupLate",
            {
                'stories_backup_last_success_timestamp_seconds{kind="files"}': gauge(-late_after - 60),
                'stories_backup_expected_interval_seconds{kind="files"}': gauge(900),
            },
            # A success that stays younger than the limit at every evaluation of the test.
            {
                'stories_backup_last_success_timestamp_seconds{kind="files"}': gauge(3600 - late_after),
                'stories_backup_expected_interval_seconds{kind="files"}': gauge(900),
            },
            {"kind": "files"},
            INTERVAL_SECONDS + late_after + 60,
        ),
        AlertCase(
            "CronCallFailed",
            {'stories_cron_last_run_success{cronjob="hard-delete"}': gauge(0)},
            {'stories_cron_last_run_success{cronjob="hard-delete"}': gauge(1)},
            {"cronjob": "hard-delete"},
            0,
        ),
        AlertCase(
            "CronCallLate",
            {
                'stories_cron_last_success_timestamp_seconds{cronjob="data-retention"}': gauge(-cron_late_after - 60),
                'stories_cron_expected_interval_seconds{cronjob="data-retention"}': gauge(86400),
            },
            # A success that stays younger than the limit at every evaluation of the test.
            {
                'stories_cron_last_success_timestamp_seconds{cronjob="data-retention"}': gauge(3600 - cron_late_after),
                'stories_cron_expected_interval_seconds{cronjob="data-retention"}': gauge(86400),
            },
            {"cronjob": "data-retention"},
            INTERVAL_SECONDS + cron_late_after + 60,
        ),
        AlertCase(
            "WalArchivingFailing",
            {"stories_backup_wal_archive_failing": gauge(1)},
            {"stories_backup_wal_archive_failing": gauge(0)},
            {},
            1,
            300,
        ),
    ]


def expected_alert(case: AlertCase, rule: monitoring.AlertRule) -> dict[str, Any]:
    labels = {**case.labels, "severity": rule.severity}
    return {
        "exp_labels": labels,
        "exp_annotations": {
            "summary": expand(rule.summary, labels, case.value),
            "description": expand(rule.description, labels, case.value),
        },
    }


def rule_test(case: AlertCase, rule: monitoring.AlertRule) -> list[dict[str, Any]]:
    """Three tests per alert: above the threshold it is not yet firing one interval before `for` has
    elapsed and is firing once it has; below the threshold it never fires."""
    fires_at = case.surely_true_from + case.for_seconds + INTERVAL_SECONDS
    tests = []
    above = [{"series": series, "values": values} for series, values in case.above.items()]
    below = [{"series": series, "values": values} for series, values in case.below.items()]
    checks_above = [{"eval_time": f"{fires_at}s", "alertname": case.alert, "exp_alerts": [expected_alert(case, rule)]}]
    if case.for_seconds:
        early = case.true_from + case.for_seconds - INTERVAL_SECONDS
        checks_above.insert(0, {"eval_time": f"{early}s", "alertname": case.alert, "exp_alerts": []})
    tests.append({"interval": f"{INTERVAL_SECONDS}s", "input_series": above, "alert_rule_test": checks_above})
    silent = [{"eval_time": f"{fires_at + extra}s", "alertname": case.alert, "exp_alerts": []} for extra in (0, 300)]
    tests.append({"interval": f"{INTERVAL_SECONDS}s", "input_series": below, "alert_rule_test": silent})
    return tests


def test_every_guide_alert_fires_above_and_stays_silent_below(tmp_path: Path) -> None:
    settings = settings_for("prod")
    rule_files = write_rules(tmp_path, settings)
    rules = {rule.name: rule for rule in monitoring.alert_rules(settings)}
    all_cases = cases(settings)
    assert {case.alert for case in all_cases} == set(rules), "every alert rule has a case"
    tests = [test for case in all_cases for test in rule_test(case, rules[case.alert])]
    # The fallback signal for active sessions, while the app does not export its own.
    fallback = AlertCase(
        "ActiveSessionsHigh",
        {'nginx_connections_active{job="nginx"}': gauge(101)},
        {'nginx_connections_active{job="nginx"}': gauge(100)},
        {},
        101,
        300,
    )
    tests += rule_test(fallback, rules["ActiveSessionsHigh"])
    document = {
        "rule_files": [path.name for path in rule_files],
        "evaluation_interval": f"{INTERVAL_SECONDS}s",
        "tests": tests,
    }
    test_file = tmp_path / "alerts.test.yml"
    test_file.write_text(yaml.safe_dump(document, sort_keys=False))
    result = run([which("promtool"), "test", "rules", test_file.name], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rule_tests_catch_a_wrong_threshold(tmp_path: Path) -> None:
    """The harness itself can fail: a rule file whose memory threshold is off by one point fails it."""
    settings = settings_for("prod")
    rule_files = write_rules(tmp_path, settings)
    alerts = rule_files[0]
    alerts.write_text(alerts.read_text().replace("* 100 > 90", "* 100 > 91"))
    rules = {rule.name: rule for rule in monitoring.alert_rules(settings)}
    case = next(c for c in cases(settings) if c.alert == "HostMemoryHigh")
    document = {
        "rule_files": [p.name for p in rule_files],
        "evaluation_interval": f"{INTERVAL_SECONDS}s",
        "tests": rule_test(case, rules["HostMemoryHigh"]),
    }
    (tmp_path / "t.yml").write_text(yaml.safe_dump(document, sort_keys=False))
    assert run([which("promtool"), "test", "rules", "t.yml"], cwd=tmp_path).returncode != 0


RECEIVERS = [
    {
        "name": "oncall-mail",
        "email": {
            "to": "oncall@stories.example.org",
            "sender": "alerts@stories.example.org",
            "smarthost": "smtp.example.org:587",
            "authUsername": "alerts",
            "authPasswordSecret": "SMTP_PASSWORD",
        },
    },
    {"name": "team-chat", "severities": ["critical"], "slack": {"apiUrlSecret": "SLACK_URL", "channel": "#ops"}},
    {"name": "pager", "webhook": {"urlSecret": "PAGER_URL"}},
]


@pytest.mark.parametrize("receivers", [[], RECEIVERS], ids=["no-receivers", "email-slack-webhook"])
def test_amtool_accepts_alertmanager_config(receivers: list[dict[str, Any]], tmp_path: Path) -> None:
    from model.loading import load_settings

    secret_values = {
        "SMTP_PASSWORD": "test-only-smtp",
        "SLACK_URL": "https://hooks.invalid/services/T0/B0/X",
        "PAGER_URL": "https://pager.invalid/hook",
    }
    settings = load_settings({**MINIMAL, "monitoring": {"receivers": receivers}}, secret_names=set(secret_values))
    config = tmp_path / "alertmanager.yml"
    config.write_text(monitoring.render_alertmanager(settings, secret_values))
    result = run([which("amtool"), "check-config", str(config)])
    assert result.returncode == 0, result.stdout + result.stderr
    routed = yaml.safe_load(config.read_text())
    assert [r["name"] for r in routed["receivers"]] == ["blackhole"] + [r["name"] for r in receivers]


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """promtool parses every panel's query (as a recording rule); the metrics they name are checked by
    tests/unit/test_dashboards.py."""
    queries = [expr for stack in STACKS for _, expr in dashboard_queries(settings_for(stack))]
    assert len(queries) >= 20
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [{"record": f"dashboard:query_{index}", "expr": expr} for index, expr in enumerate(queries)],
            }
        ]
    }
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = run([which("promtool"), "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_name_only_provided_metrics() -> None:
    settings = settings_for("prod")
    expressions = [rule.expr for rule in monitoring.alert_rules(settings)]
    expressions += [rule.expr for rule in monitoring.recording_rules()]
    for expr in expressions:
        assert metric_names(expr) <= set(METRICS), expr
    for rule in monitoring.recording_rules():
        assert rule.record in METRICS and METRICS[rule.record] == "recording-rule"
