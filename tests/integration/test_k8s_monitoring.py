"""A Kubernetes stack's PrometheusRules checked by promtool, and each backup and scheduled-call alert run by
`promtool test rules` on synthetic kube-state-metrics and CloudNativePG series, labelled as those exporters label
them: it fires when the backup or call is late or failed and stays silent otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from configs.kubernetes import alerts
from configs.kubernetes.cron import cron_job_name, longest_gap_seconds
from configs.kubernetes.monitoring import prometheus_rules
from configs.monitoring import AlertRule
from harness.servers import which
from model.settings import Settings
from tests.integration.test_monitoring import INTERVAL_SECONDS, AlertCase, gauge, rule_test, run
from tests.unit.test_k8s_alerts import SCRAPED
from tools.plan import settings_for

pytestmark = pytest.mark.integration

SETTINGS = settings_for("k8s")
NAMESPACE = SETTINGS.kubernetes.namespace
LONG_AGO = -(10**8)
KSM = f'job="kube-state-metrics", namespace="{NAMESPACE}"'


def write_rules(directory: Path, settings: Settings) -> list[Path]:
    """The PrometheusRules' specs as rule files (a spec is a rule file's document)."""
    paths = []
    for rule in prometheus_rules(settings, NAMESPACE):
        path = directory / f"{rule['metadata']['name']}.yml"
        path.write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
        paths.append(path)
    return paths


@pytest.mark.parametrize("settings", [SETTINGS, SCRAPED], ids=["k8s", "scraped"])
def test_promtool_accepts_the_rules(settings: Settings, tmp_path: Path) -> None:
    checked = run([which("promtool"), "check", "rules", *map(str, write_rules(tmp_path, settings))])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def cron_job(metric: str, name: str, value: float) -> dict[str, str]:
    return {f'{metric}{{{KSM}, cronjob="{name}"}}': gauge(value)}


def job(name: str, cron_job: str, started: float, failed: bool) -> dict[str, str]:
    """A Job of `cron_job` as kube-state-metrics shows it: kube_job_failed only once it has a Failed condition."""
    series = {
        f'kube_job_status_start_time{{{KSM}, job_name="{name}"}}': gauge(started),
        f'kube_job_owner{{{KSM}, job_name="{name}", owner_kind="CronJob", owner_name="{cron_job}", '
        'owner_is_controller="true"}': gauge(1),
    }
    if failed:
        for condition, value in (("true", 1), ("false", 0), ("unknown", 0)):
            series[f'kube_job_failed{{{KSM}, job_name="{name}", condition="{condition}"}}'] = gauge(value)
    return series


def instance(metric: str, pod: str, value: float) -> dict[str, str]:
    """A CloudNativePG instance's metric as the postgres PodMonitor's scrape labels it."""
    return {f'{metric}{{job="{NAMESPACE}/postgres", namespace="{NAMESPACE}", pod="{pod}"}}': gauge(value)}


def pod_created(pod: str, value: float) -> dict[str, str]:
    return {f'kube_pod_created{{{KSM}, pod="{pod}", uid="{pod}-uid"}}': gauge(value)}


def backups(pod: str, succeeded: float, failed: float) -> dict[str, str]:
    return {
        **instance("cnpg_collector_last_available_backup_timestamp", pod, succeeded),
        **instance("cnpg_collector_last_failed_backup_timestamp", pod, failed),
    }


def kind(name: str) -> dict[str, str]:
    return {"namespace": NAMESPACE, "kind": name}


def cron_job_cases(
    name: str, labels: dict[str, str], seconds: int, late_factor: float, alerts: tuple[str, str]
) -> list[AlertCase]:
    """`alerts`: the failed and the late alert of CronJob `name`. Failed: a failed Job started after the last
    success (also with none yet); not failed: the failed Job is older than the last success, or it is another
    CronJob's. Late: the last success, or the creation while there is none, older than `late_factor` x the
    interval."""
    failed_alert, late_alert = alerts
    late_after = int(late_factor * seconds)
    created = cron_job("kube_cronjob_created", name, 0)
    old_created = cron_job("kube_cronjob_created", name, LONG_AGO)
    other = f"other-{name}"
    failed_after_success = {
        **created,
        **cron_job("kube_cronjob_status_last_successful_time", name, 50),
        **job(f"{name}-2", name, 100, failed=True),
    }
    failed_before_success = {
        **created,
        **cron_job("kube_cronjob_status_last_successful_time", name, 150),
        **job(f"{name}-1", name, 100, failed=True),
        **job(f"{other}-1", other, 200, failed=True),
    }
    never_succeeded = {**created, **job(f"{name}-1", name, 100, failed=True)}
    running = {**created, **job(f"{name}-1", name, 100, failed=False)}
    late = INTERVAL_SECONDS + late_after + 60
    return [
        AlertCase(failed_alert, failed_after_success, failed_before_success, labels, 100),
        AlertCase(failed_alert, never_succeeded, running, labels, 100),
        AlertCase(
            late_alert,
            {**old_created, **cron_job("kube_cronjob_status_last_successful_time", name, -late_after - 60)},
            # A success that stays younger than the limit at every evaluation of the test.
            {**old_created, **cron_job("kube_cronjob_status_last_successful_time", name, 3600 - late_after)},
            labels,
            late,
        ),
        AlertCase(
            late_alert,
            cron_job("kube_cronjob_created", name, -late_after - 60),
            cron_job("kube_cronjob_created", name, 0),
            labels,
            late,
        ),
    ]


def backup_cases(name: str, kind_name: str, seconds: int) -> list[AlertCase]:
    return cron_job_cases(name, kind(kind_name), seconds, SETTINGS.backup.late_factor, ("BackupFailed", "BackupLate"))


def postgres_cases() -> list[AlertCase]:
    """The primary (postgres-1) has the Cluster's backup times, the replica (postgres-2) zeros; before the first
    backup the oldest instance pod's creation counts (not CloudNativePG's init Job's pod)."""
    late_after = int(SETTINGS.backup.late_factor * SETTINGS.backup.postgres.full_interval_hours * 3600)
    replica = backups("postgres-2", 0, 0)
    pods = {**pod_created("postgres-1", LONG_AGO), **pod_created("postgres-2", 0)}
    late = INTERVAL_SECONDS + late_after + 60
    archiver = "cnpg_pg_stat_archiver_last_{}_time"
    wal_labels = {"job": f"{NAMESPACE}/postgres", "namespace": NAMESPACE, "pod": "postgres-1"}
    return [
        AlertCase(
            "BackupFailed",
            {**backups("postgres-1", 100, 200), **replica},
            {**backups("postgres-1", 200, 100), **replica},
            kind("postgres"),
            200,
        ),
        AlertCase(
            "BackupLate",
            {**backups("postgres-1", -late_after - 60, 0), **replica, **pods},
            {**backups("postgres-1", 3600 - late_after, 0), **replica, **pods},
            kind("postgres"),
            late,
        ),
        AlertCase(
            "BackupLate",
            {**backups("postgres-1", 0, 0), **replica, **pod_created("postgres-1", -late_after - 60)},
            {
                **backups("postgres-1", 0, 0),
                **replica,
                **pod_created("postgres-1", 0),
                **pod_created("postgres-1-initdb-x7k2p", LONG_AGO),
            },
            kind("postgres"),
            late,
        ),
        AlertCase(
            "WalArchivingFailing",
            {
                **instance(archiver.format("failed"), "postgres-1", 100),
                **instance(archiver.format("archived"), "postgres-1", 50),
            },
            {
                **instance(archiver.format("failed"), "postgres-1", -1),  # never failed
                **instance(archiver.format("archived"), "postgres-1", 50),
            },
            wal_labels,
            100,
            300,
        ),
    ]


def promtool_test(tmp_path: Path, cases: list[AlertCase], rules: dict[str, AlertRule]) -> None:
    """`promtool test rules` of each case against the stack's rule files."""
    assert {case.alert for case in cases} == set(rules)
    document = {
        "rule_files": [path.name for path in write_rules(tmp_path, SETTINGS)],
        "evaluation_interval": f"{INTERVAL_SECONDS}s",
        "tests": [test for case in cases for test in rule_test(case, rules[case.alert])],
    }
    (tmp_path / "k8s.test.yml").write_text(yaml.safe_dump(document, sort_keys=False))
    result = run([which("promtool"), "test", "rules", "k8s.test.yml"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_backup_alert_fires_when_late_or_failed_and_stays_silent_otherwise(tmp_path: Path) -> None:
    backup = SETTINGS.backup
    cases = [
        *backup_cases("files-backup", "files", backup.files.interval_minutes * 60),
        *backup_cases("files-backup-check", "verify", backup.verify_interval_hours * 3600),
        *postgres_cases(),
    ]
    promtool_test(tmp_path, cases, {rule.name: rule for rule in alerts.backup_alert_rules(SETTINGS, NAMESPACE)})


def test_every_scheduled_call_alerts_when_late_or_failed_and_stays_silent_otherwise(tmp_path: Path) -> None:
    """Each of the app's calls (cron.jobs) by its CronJob, with cron.lateFactor and its schedule's longest gap."""
    cases = [
        case
        for job in SETTINGS.cron.jobs
        for case in cron_job_cases(
            cron_job_name(job),
            {"namespace": NAMESPACE, "cronjob": job.name},
            longest_gap_seconds(SETTINGS, job),
            SETTINGS.cron.late_factor,
            ("CronCallFailed", "CronCallLate"),
        )
    ]
    promtool_test(tmp_path, cases, {rule.name: rule for rule in alerts.cron_alert_rules(SETTINGS, NAMESPACE)})
