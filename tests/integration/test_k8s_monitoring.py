"""A Kubernetes stack's PrometheusRules checked by promtool, and each alert rebuilt for Kubernetes run by
`promtool test rules` on synthetic kube-state-metrics, kubelet cAdvisor, CloudNativePG and Envoy series, labelled
as those exporters and kube-prometheus-stack's scrapes label them: it fires when the backup or call is late or
failed, or past the Docker target's threshold, and stays silent otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from configs.kubernetes import alerts
from configs.kubernetes.app import APP
from configs.kubernetes.cron import cron_job_name, longest_gap_seconds
from configs.kubernetes.monitoring import prometheus_rules
from configs.monitoring import AlertRule
from harness.servers import which
from model.settings import Settings
from tests.integration.test_monitoring import INTERVAL_SECONDS, AlertCase, counter, failures, gauge, rule_test, run
from tests.unit.test_k8s_alerts import REPLACED, SCRAPED
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
        *backup_cases("redis-backup", "redis", backup.files.interval_minutes * 60),
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


POD = "app-7c9d8f6b5-x2k4p"  # a pod of the app's Deployment
KSM_POD = f'{KSM}, instance="10.42.0.7:8080", pod="{POD}", uid="{POD}-uid"'
CADVISOR = (
    f'job="kubelet", metrics_path="/metrics/cadvisor", namespace="{NAMESPACE}", pod="{POD}", node="node-1", '
    'instance="10.0.0.1:10250", endpoint="https-metrics", service="kube-prometheus-stack-kubelet"'
)
# Envoy's default histogram buckets (ms), as its proxies serve envoy_cluster_upstream_rq_time.
ENVOY_BUCKETS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000)


def database_case() -> AlertCase:
    """One instance's pings (cnpg_collector_up, labelled `cluster` by CloudNativePG, scraped by the postgres
    PodMonitor): the most failures at the threshold stay silent, one more fires (as pg_up's on Docker)."""
    window_samples = 300 // INTERVAL_SECONDS + 1
    allowed = int(SETTINGS.monitoring.alerts.db_connection_failure_percent / 100 * window_samples)
    labels = {"job": f"{NAMESPACE}/postgres", "namespace": NAMESPACE, "pod": "postgres-1", "cluster": "postgres"}
    series = "cnpg_collector_up{" + ", ".join(f'{key}="{value}"' for key, value in labels.items()) + "}"
    return AlertCase(
        "DatabaseConnectionFailures",
        {series: failures(allowed + 1)},
        {series: failures(allowed)},
        labels,
        100 * (allowed + 1) / window_samples,
        60,
        true_from=(20 + allowed) * INTERVAL_SECONDS,
    )


def app_cases() -> list[AlertCase]:
    """The app container's readiness (other containers' not), the Deployment's available replicas (others' not)."""
    down = SETTINGS.monitoring.alerts.service_down_minutes * 60
    replicas = SETTINGS.app.replicas

    def ready(container: str, value: float) -> dict[str, str]:
        return {f'kube_pod_container_status_ready{{{KSM_POD}, container="{container}"}}': gauge(value)}

    def available(deployment: str, value: float) -> dict[str, str]:
        series = (
            f'kube_deployment_status_replicas_available{{{KSM}, instance="10.42.0.7:8080", deployment="{deployment}"}}'
        )
        return {series: gauge(value)}

    pod = {"job": "kube-state-metrics", "namespace": NAMESPACE, "pod": POD, "uid": f"{POD}-uid", "container": APP}
    return [
        AlertCase(
            "AppHealthCheckFailing",
            ready(APP, 0),
            {**ready(APP, 1), **ready("exporter", 0)},
            {**pod, "instance": POD},
            0,
            down,
        ),
        AlertCase(
            "AppReplicasBelowFloor", available(APP, replicas - 1), available(APP, replicas), {}, replicas - 1, down
        ),
        AlertCase("AppReplicasBelowFloor", available("files", replicas), available(APP, replicas), {}, 0, down),
    ]


def container_cases() -> list[AlertCase]:
    """The app container's use against its limit from kube-state-metrics; the pod's own cgroup (container="")
    and other containers are left out."""
    t = SETTINGS.monitoring.alerts

    def limit(resource: str, unit: str, value: float) -> dict[str, str]:
        series = (
            f'kube_pod_container_resource_limits{{{KSM_POD}, container="{APP}", node="node-1", '
            f'resource="{resource}", unit="{unit}"}}'
        )
        return {series: gauge(value)}

    def used(metric: str, container: str, values: str) -> dict[str, str]:
        cgroup = f"/kubepods/burstable/pod{POD}-uid" + (f"/{container}" if container else "")
        return {f'{metric}{{{CADVISOR}, container="{container}", id="{cgroup}"}}': values}

    memory = "container_memory_working_set_bytes"
    cpu = "container_cpu_usage_seconds_total"
    pod_cgroup = {**used(memory, "", gauge(2000)), **used(cpu, "", counter(1))}
    labels = {"namespace": NAMESPACE, "pod": POD, "container": APP, "name": f"{POD}/{APP}"}
    return [
        AlertCase(
            "ContainerMemoryHigh",
            {**used(memory, APP, gauge(t.memory_percent * 10 + 1)), **limit("memory", "byte", 1000), **pod_cgroup},
            {**used(memory, APP, gauge(t.memory_percent * 10 - 1)), **limit("memory", "byte", 1000), **pod_cgroup},
            labels,
            t.memory_percent + 0.1,
            120,
        ),
        AlertCase(
            "ContainerCpuHigh",
            {**used(cpu, APP, counter((t.cpu_percent / 100 + 0.01) / 2)), **limit("cpu", "core", 0.5), **pod_cgroup},
            {**used(cpu, APP, counter((t.cpu_percent / 100 - 0.01) / 2)), **limit("cpu", "core", 0.5), **pod_cgroup},
            labels,
            t.cpu_percent + 1,
            t.cpu_for_minutes * 60,
            true_from=INTERVAL_SECONDS,
            settle=300,
        ),
    ]


def envoy_requests(route: str, upper_ms: float) -> dict[str, str]:
    """One request a second through `route`'s first rule, each answered within the bucket up to `upper_ms`."""
    scrape = (
        'job="envoy-gateway-system/stories-gateway", namespace="envoy-gateway-system", pod="envoy-stories-gateway-5d8"'
    )
    cluster = f"httproute/{NAMESPACE}/{route}/rule/0"
    return {
        f'envoy_cluster_upstream_rq_time_bucket{{{scrape}, envoy_cluster_name="{cluster}", le="{le:g}"}}': (
            counter(1) if le >= upper_ms else gauge(0)
        )
        for le in ENVOY_BUCKETS
    } | {f'envoy_cluster_upstream_rq_time_bucket{{{scrape}, envoy_cluster_name="{cluster}", le="+Inf"}}': counter(1)}


def slow_case() -> AlertCase:
    """All of the app's requests in the first bucket past the threshold (the 95th percentile is interpolated
    in it), or in the last under it, with the static server's route slow."""
    threshold_ms = SETTINGS.monitoring.alerts.response_time_seconds * 1000
    bounds = list(zip((0, *ENVOY_BUCKETS), ENVOY_BUCKETS, strict=False))
    low, high = next((low, high) for low, high in bounds if low >= threshold_ms)
    fast = max(high for _, high in bounds if high <= threshold_ms)
    return AlertCase(
        "SlowResponses",
        envoy_requests(APP, high),
        {**envoy_requests(APP, fast), **envoy_requests("files", high)},
        {},
        (low + 0.95 * (high - low)) / 1000,
        120,
        true_from=INTERVAL_SECONDS,
    )


def test_every_rebuilt_docker_alert_fires_past_its_threshold_and_stays_silent_otherwise(tmp_path: Path) -> None:
    """The app's, the containers', the database's and the response times' alerts, with the Docker target's
    thresholds from the settings."""
    cases = [database_case(), *app_cases(), *container_cases(), slow_case()]
    names = {*REPLACED, "DatabaseConnectionFailures"}
    rules = {rule.name: rule for rule in alerts.alert_rules(SETTINGS, NAMESPACE) if rule.name in names}
    promtool_test(tmp_path, cases, rules)
