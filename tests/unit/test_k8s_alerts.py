"""A Kubernetes stack's rules: only metrics that exist there (configs/metrics.py KUBERNETES_METRICS, each with its
exporter and version), the backup alerts' thresholds from the settings, the Docker target's rules unchanged.
promtool checks them and runs them on synthetic series in tests/integration/test_k8s_monitoring.py."""

from __future__ import annotations

import json
import re
from typing import Any

from configs import monitoring
from configs.kubernetes import alerts
from configs.kubernetes.monitoring import prometheus_rules
from configs.metrics import KUBERNETES_METRICS, METRICS, SOURCES, metric_names
from model.settings import Settings
from tests.unit.test_k8s_plan import objects, one
from tools.plan import settings_for, settings_of, stack_config

SETTINGS = settings_for("k8s")
NAMESPACE = SETTINGS.kubernetes.namespace


def k8s_with_backup(backup: dict[str, Any]) -> Settings:
    """The k8s stack's settings with `backup` keys merged in."""
    config, _ = stack_config("k8s")
    raw = json.loads(config["1001-stories:settings"])
    raw["backup"] = {**raw["backup"], **backup}
    return settings_of({**config, "1001-stories:settings": json.dumps(raw)})


def by_kind(rules: list[monitoring.AlertRule], name: str) -> dict[str, str]:
    """The expressions of the rules called `name`, by the `kind` their expression sets."""
    kinds = ("postgres", "files", "verify")
    return {
        kind: rule.expr for rule in rules if rule.name == name for kind in kinds if f'"kind", "{kind}"' in rule.expr
    }


def test_rules_name_only_metrics_that_exist_on_kubernetes() -> None:
    recorded = {rule.record for rule in alerts.recording_rules()}
    expressions = [rule.expr for rule in alerts.alert_rules(SETTINGS, NAMESPACE)]
    for expr in expressions + [rule.expr for rule in alerts.recording_rules()]:
        assert metric_names(expr) <= set(KUBERNETES_METRICS) | recorded, expr
    assert set(KUBERNETES_METRICS.values()) <= set(SOURCES)


def test_docker_only_rules_are_left_out_and_backup_rules_replace_theirs() -> None:
    names = [rule.name for rule in alerts.alert_rules(SETTINGS, NAMESPACE)]
    kept = ["ServiceDown", "HostMemoryHigh", "DiskSpaceLow", "HostCpuHigh"]
    assert names == [*kept, "BackupFailed", "BackupLate", "WalArchivingFailing"]
    assert alerts.recording_rules() == []  # postgres_exporter, nginx and the app's sessions: none on Kubernetes
    docker = {rule.name: rule for rule in monitoring.alert_rules(SETTINGS)}
    assert [rule for rule in alerts.alert_rules(SETTINGS, NAMESPACE) if rule.name in kept] == [
        docker[name] for name in kept
    ]


def test_backup_rules_share_the_docker_rules_settings_and_wording() -> None:
    docker = {rule.name: rule for rule in monitoring.alert_rules(SETTINGS)}
    for rule in alerts.backup_alert_rules(SETTINGS, NAMESPACE):
        twin = docker[rule.name]
        assert (rule.for_, rule.severity, rule.summary) == (twin.for_, twin.severity, twin.summary)
        if rule.name != "BackupFailed":  # its description names where the failed run's log is
            assert rule.description == twin.description


def test_thresholds_follow_the_settings() -> None:
    settings = k8s_with_backup(
        {
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
    settings = k8s_with_backup({"s3": {"enabled": False}})
    assert not {"BackupFailed", "BackupLate", "WalArchivingFailing"} & {
        rule.name for rule in alerts.alert_rules(settings, NAMESPACE)
    }


def test_one_prometheus_rule_per_file_with_rules() -> None:
    assert [rule["metadata"]["name"] for rule in prometheus_rules(SETTINGS, NAMESPACE)] == ["alerts"]
    assert [resource.inputs["metadata"]["name"] for resource in objects("PrometheusRule")] == ["alerts"]
    (group,) = one("PrometheusRule", "alerts")["spec"]["groups"]
    assert group["rules"] == [rule.as_rule() for rule in alerts.alert_rules(SETTINGS, NAMESPACE)]


def test_docker_rules_name_no_kubernetes_metric() -> None:
    only_kubernetes = set(KUBERNETES_METRICS) - set(METRICS)
    for stack in ("dev", "staging", "prod"):
        for rule in monitoring.alert_rules(settings_for(stack)):
            assert not metric_names(rule.expr) & only_kubernetes, rule
