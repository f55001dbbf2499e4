"""A Kubernetes stack's rules: only metrics that exist there (configs/metrics.py KUBERNETES_METRICS, each with its
exporter and version), the backup alerts' thresholds from the settings, the Docker target's rules unchanged.
promtool checks them and runs them on synthetic series in tests/integration/test_k8s_monitoring.py."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from configs import monitoring
from configs.kubernetes import alerts
from configs.kubernetes.app import APP
from configs.kubernetes.gateway import APP_ROUTES, http_routes
from configs.kubernetes.monitoring import prometheus_rules
from configs.metrics import KUBERNETES_METRICS, METRICS, SOURCES, metric_names
from configs.monitoring import ACTIVE_SESSIONS
from model.settings import Settings
from tests.unit.test_k8s_plan import k8s_config, objects, one
from tools.plan import settings_for, settings_of

SETTINGS = settings_for("k8s")
NAMESPACE = SETTINGS.kubernetes.namespace


def k8s_with(**sections: dict[str, Any]) -> Settings:
    return settings_of(k8s_config(**sections))


SCRAPED = k8s_with(app={"metricsPath": "/api/metrics"})


def by_kind(rules: list[monitoring.AlertRule], name: str) -> dict[str, str]:
    """The expressions of the rules called `name`, by the `kind` their expression sets."""
    kinds = ("postgres", "files", "verify", "redis")
    return {
        kind: rule.expr for rule in rules if rule.name == name for kind in kinds if f'"kind", "{kind}"' in rule.expr
    }


@pytest.mark.parametrize("settings", [SETTINGS, SCRAPED], ids=["k8s", "scraped"])
def test_rules_name_only_metrics_that_exist_on_kubernetes(settings: Settings) -> None:
    records = alerts.recording_rules(settings, NAMESPACE)
    recorded = {rule.record for rule in records}
    expressions = [rule.expr for rule in alerts.alert_rules(settings, NAMESPACE)]
    for expr in expressions + [rule.expr for rule in records]:
        assert metric_names(expr) <= set(KUBERNETES_METRICS) | recorded, expr
    assert set(KUBERNETES_METRICS.values()) <= set(SOURCES)


REPLACED = [
    "AppHealthCheckFailing",
    "AppReplicasBelowFloor",
    "ContainerMemoryHigh",
    "ContainerCpuHigh",
    "SlowResponses",
]
KEPT = ["DatabaseConnectionFailures", "HostMemoryHigh", "DiskSpaceLow", "HostCpuHigh"]


def test_every_docker_rule_has_a_kubernetes_counterpart_and_backup_and_cron_rules_replace_theirs() -> None:
    """All but ActiveSessionsHigh, whose sessions exist only where the app is scraped."""
    rules = alerts.alert_rules(SETTINGS, NAMESPACE)
    docker = {rule.name for rule in monitoring.alert_rules(SETTINGS)}
    assert sorted(rule.name for rule in rules) == sorted(docker - {"ActiveSessionsHigh"})
    docker_rules = {rule.name: rule for rule in monitoring.alert_rules(SETTINGS)}
    assert [rule for rule in rules if rule.name in KEPT] == [docker_rules[name] for name in KEPT]
    (record,) = alerts.recording_rules(SETTINGS, NAMESPACE)  # postgres_exporter, nginx; the app is not scraped
    assert record.record == monitoring.DB_CONNECTION_FAILURE_RATIO


def test_database_failures_are_cloudnative_pgs_pings_of_the_stacks_cluster() -> None:
    (record,) = alerts.recording_rules(SETTINGS, NAMESPACE)
    assert record.expr == (f'1 - avg_over_time(cnpg_collector_up{{namespace="{NAMESPACE}", cluster="postgres"}}[5m])')
    assert KUBERNETES_METRICS["cnpg_collector_up"] == "cloudnative-pg"


THRESHOLDS = k8s_with(
    app={"replicas": 3},
    monitoring={
        "alerts": {
            "serviceDownMinutes": 4,
            "memoryPercent": 77,
            "cpuPercent": 66,
            "cpuForMinutes": 9,
            "responseTimeSeconds": 1.5,
        }
    },
)


@pytest.mark.parametrize("settings", [SETTINGS, THRESHOLDS], ids=["k8s", "thresholds"])
def test_replaced_rules_keep_the_docker_rules_for_severity_summary_and_threshold(settings: Settings) -> None:
    rules = {rule.name: rule for rule in alerts.alert_rules(settings, NAMESPACE)}
    docker = {rule.name: rule for rule in monitoring.alert_rules(settings)}
    for name in REPLACED:
        rule, twin = rules[name], docker[name]
        assert (rule.for_, rule.severity, rule.summary) == (twin.for_, twin.severity, twin.summary), name
        assert rule.expr != twin.expr, name
        if name != "AppHealthCheckFailing":  # the others end in their threshold
            assert rule.expr.split()[-2:] == twin.expr.split()[-2:], name
        if name not in ("AppReplicasBelowFloor", "SlowResponses"):  # these say what they count and measure
            assert rule.description == twin.description, name
    t = settings.monitoring.alerts
    assert rules["AppReplicasBelowFloor"].expr.endswith(f"< {settings.app.replicas}")
    assert rules["SlowResponses"].expr.endswith(f"> {t.response_time_seconds:g}")
    assert rules["ContainerCpuHigh"].for_ == f"{t.cpu_for_minutes}m"


def test_replaced_rules_read_the_stacks_namespace() -> None:
    rules = {rule.name: rule for rule in alerts.replaced_rules(SETTINGS, NAMESPACE)}
    for name in ("AppHealthCheckFailing", "AppReplicasBelowFloor", "ContainerMemoryHigh", "ContainerCpuHigh"):
        expr = rules[name].expr
        assert expr.count(f'namespace="{NAMESPACE}"') == expr.count("{"), name
    assert f'container="{APP}"' in rules["AppHealthCheckFailing"].expr
    assert f'deployment="{APP}"' in rules["AppReplicasBelowFloor"].expr
    cluster = f'envoy_cluster_name=~"httproute/{NAMESPACE}/(app-auth|app-api|app)/rule/[0-9]+"'
    assert cluster in rules["SlowResponses"].expr
    assert {route["metadata"]["name"] for route in http_routes(SETTINGS, NAMESPACE)} >= set(APP_ROUTES)


def test_service_down_watches_the_stacks_namespace_only() -> None:
    (rule,) = [rule for rule in alerts.alert_rules(SETTINGS, NAMESPACE) if rule.name == "ServiceDown"]
    docker = next(rule for rule in monitoring.alert_rules(SETTINGS) if rule.name == "ServiceDown")
    assert rule.expr == f'up{{namespace="{NAMESPACE}"}} == 0'
    assert dataclasses.replace(rule, expr=docker.expr) == docker


def test_a_scraped_app_brings_its_sessions_rule_and_alert() -> None:
    (record,) = [rule for rule in alerts.recording_rules(SCRAPED, NAMESPACE) if rule.record == ACTIVE_SESSIONS]
    assert (record.record, record.expr) == (ACTIVE_SESSIONS, f'sum(stories_active_sessions{{namespace="{NAMESPACE}"}})')
    rules = {rule.name: rule for rule in alerts.alert_rules(SCRAPED, NAMESPACE)}
    assert rules["ActiveSessionsHigh"] == next(
        rule for rule in monitoring.alert_rules(SCRAPED) if rule.name == "ActiveSessionsHigh"
    )
    assert "ActiveSessionsHigh" not in {rule.name for rule in alerts.alert_rules(SETTINGS, NAMESPACE)}


def test_cron_rules_share_the_docker_rules_wording_and_late_factor() -> None:
    settings = k8s_with(cron={"lateFactor": 3})
    docker = {rule.name: rule for rule in monitoring.alert_rules(settings)}
    for rule in alerts.cron_alert_rules(settings, NAMESPACE):
        twin = docker[rule.name]
        assert (rule.for_, rule.severity, rule.summary) == (twin.for_, twin.severity, twin.summary)
        if rule.name == "CronCallLate":
            assert rule.description == twin.description
            assert "more than 3 times" in rule.description
    assert not {"CronCallFailed", "CronCallLate"} & {
        rule.name for rule in alerts.alert_rules(k8s_with(cron={"enabled": False}), NAMESPACE)
    }


def test_cron_thresholds_are_each_schedules_longest_gap() -> None:
    jobs = [
        {"name": "hourly", "path": "/api/cron/a", "schedule": "0 * * * *"},
        {"name": "weekdays", "path": "/api/cron/b", "schedule": "30 3 * * 1-5"},
    ]
    settings = k8s_with(cron={"jobs": jobs, "lateFactor": 2.5})
    late = next(rule for rule in alerts.cron_alert_rules(settings, NAMESPACE) if rule.name == "CronCallLate").expr
    # Friday 03:30 to Monday 03:30; in Europe/Berlin the weekend clocks go back on adds an hour.
    for cron_job, seconds in (("hourly", 3600), ("weekdays", 3 * 86400 + 3600)):
        assert re.search(f'cronjob="cron-{cron_job}"}}.*> 2.5 \\* {seconds}, "cronjob", "{cron_job}"', late), cron_job
    assert late.count(f'namespace="{NAMESPACE}"') == late.count("{")


def test_backup_rules_share_the_docker_rules_settings_and_wording() -> None:
    docker = {rule.name: rule for rule in monitoring.alert_rules(SETTINGS)}
    for rule in alerts.backup_alert_rules(SETTINGS, NAMESPACE):
        twin = docker[rule.name]
        assert (rule.for_, rule.severity, rule.summary) == (twin.for_, twin.severity, twin.summary)
        if rule.name != "BackupFailed":  # its description names where the failed run's log is
            assert rule.description == twin.description


def test_thresholds_follow_the_settings() -> None:
    settings = k8s_with(
        backup={
            "lateFactor": 3.5,
            "verifyIntervalHours": 12,
            "files": {"intervalMinutes": 10},
            "postgres": {"fullIntervalHours": 24},
        }
    )
    rules = {rule.name: rule for rule in alerts.alert_rules(settings, NAMESPACE)}
    late = rules["BackupLate"].expr
    for seconds, scope, kind in (
        (86400, "cnpg_collector_last_available_backup_timestamp", "postgres"),
        (600, 'cronjob="files-backup"}', "files"),
        (43200, 'cronjob="files-backup-check"}', "verify"),
    ):
        assert re.search(f'{re.escape(scope)}.*> 3.5 \\* {seconds}, "kind", "{kind}"', late), kind
    assert late.count(f'namespace="{NAMESPACE}"') == late.count("{")
    assert "more than 3.5 times" in rules["BackupLate"].description


def test_no_backup_alerts_without_backups() -> None:
    settings = k8s_with(backup={"s3": {"enabled": False}})
    assert not {"BackupFailed", "BackupLate", "WalArchivingFailing"} & {
        rule.name for rule in alerts.alert_rules(settings, NAMESPACE)
    }


def test_one_prometheus_rule_per_file_with_rules() -> None:
    names = ["alerts", "recording"]
    assert [rule["metadata"]["name"] for rule in prometheus_rules(SETTINGS, NAMESPACE)] == names
    assert [resource.inputs["metadata"]["name"] for resource in objects("PrometheusRule")] == names
    (group,) = one("PrometheusRule", "alerts")["spec"]["groups"]
    assert group["rules"] == [rule.as_rule() for rule in alerts.alert_rules(SETTINGS, NAMESPACE)]
    (group,) = one("PrometheusRule", "recording")["spec"]["groups"]
    assert group["rules"] == [rule.as_rule() for rule in alerts.recording_rules(SETTINGS, NAMESPACE)]


def test_docker_rules_name_no_kubernetes_metric() -> None:
    only_kubernetes = set(KUBERNETES_METRICS) - set(METRICS)
    for stack in ("dev", "staging", "prod"):
        for rule in monitoring.alert_rules(settings_for(stack)):
            assert not metric_names(rule.expr) & only_kubernetes, rule
